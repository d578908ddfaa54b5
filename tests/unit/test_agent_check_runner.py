"""The check runner's shell against a real state machine and a stand-in Raft (no sockets: the
probe is scripted): one write per change and none per unchanged run, alias checks follow the
catalog, a re-registration's reset status is restored, a deregistration stops the probing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from meshfed.fsm import CatalogDeregister, CatalogRegister, CheckUpdate, Command, StateMachine, encode_batch
from meshfed.fsm.records import STATUS_CRITICAL, STATUS_PASSING, HealthCheck, Node, NodeService
from meshfed.server.checks import runner as runner_module
from meshfed.server.checks.decide import Result
from meshfed.server.checks.runner import CheckRunner
from meshfed.server.checks.spec import CheckSpec
from meshfed.server.requests.watch import WatchHub

NODE = Node(node="n1", address="127.0.0.1")


class InlineRaft:
    """Applies proposals at once, in the loop, and wakes the watches as the agent's hook does."""

    def __init__(self, machine: StateMachine, watches: WatchHub) -> None:
        self.machine = machine
        self.index = 0
        self.check_updates: list[CheckUpdate] = []
        machine.subscribe(lambda tables, index: watches.notify(tables, index))

    async def apply(self, commands: Sequence[tuple[str, Command]], timeout: float = 5.0) -> list[Any]:
        self.index += 1
        self.check_updates += [c for _, c in commands if isinstance(c, CheckUpdate)]
        return self.machine.apply(self.index, encode_batch(list(commands)))


def registration(service_id: str, *checks: HealthCheck) -> CatalogRegister:
    return CatalogRegister(node=NODE, service=NodeService(id=service_id, service=service_id), checks=checks)


def tcp_check(service_id: str) -> HealthCheck:
    return HealthCheck(node="n1", check_id=f"service:{service_id}", name="tcp", service_id=service_id, type="tcp",
                       interval="10s", definition={"TCP": "127.0.0.1:1", "Interval": "10s"})


def alias_check(service_id: str, aliased: str) -> HealthCheck:
    return HealthCheck(node="n1", check_id=f"service:{service_id}", name="alias", service_id=service_id,
                       type="alias", definition={"AliasService": aliased})


async def settle(condition: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_writes_only_changes_follows_aliases_restores_resets_and_stops_on_deregistration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        machine, watches = StateMachine(), WatchHub()
        raft = InlineRaft(machine, watches)
        outcome = {"status": STATUS_PASSING}
        probes: list[str] = []

        async def probe(self: CheckRunner, spec: CheckSpec) -> Result:
            probes.append(spec.check_id)
            return Result(outcome["status"], f"probe says {outcome['status']}")

        monkeypatch.setattr(CheckRunner, "_probe", probe)
        monkeypatch.setattr(runner_module, "next_delay", lambda *args, **kwargs: 0.01)  # fast runs
        runs: list[tuple[str, str]] = []
        runner = CheckRunner(node="n1", state=machine.state, watches=watches, raft=raft,  # type: ignore[arg-type]
                             on_run=lambda kind, result: runs.append((kind, result)))
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.01)  # its first scan (an empty node): what follows is new, run at once
        try:
            await raft.apply([("", registration("web", tcp_check("web"))),
                              ("", registration("proxy", alias_check("proxy", "web")))])

            def status(check_id: str) -> str:
                check = machine.state.get_check("n1", check_id)
                return check.status if check else ""

            await settle(lambda: status("service:web") == status("service:proxy") == STATUS_PASSING)
            writes, probed = len(raft.check_updates), len(probes)
            await settle(lambda: len(probes) >= probed + 10)  # many unchanged runs...
            assert len(raft.check_updates) == writes  # ...and no write for any of them
            assert ("tcp", STATUS_PASSING) in runs and ("alias", STATUS_PASSING) in runs

            outcome["status"] = STATUS_CRITICAL  # the target goes away: the alias follows
            await settle(lambda: status("service:web") == status("service:proxy") == STATUS_CRITICAL)
            proxy_check = machine.state.get_check("n1", "service:proxy")
            assert proxy_check is not None and proxy_check.output == "Aliased check 'tcp' failing: probe says critical"

            outcome["status"] = STATUS_PASSING
            await settle(lambda: status("service:web") == STATUS_PASSING)
            # Re-registering the same check resets it to critical; the last result is written back.
            await raft.apply([("", registration("web", tcp_check("web")))])
            await settle(lambda: status("service:web") == STATUS_PASSING and status("service:proxy") == STATUS_PASSING)

            await raft.apply([("", CatalogDeregister(node="n1", service_id="web"))])
            await settle(lambda: runner.running() == {})
            await settle(lambda: status("service:proxy") == STATUS_CRITICAL)  # the aliased service is gone
            proxy_check = machine.state.get_check("n1", "service:proxy")
            assert proxy_check is not None and proxy_check.output == "Service web could not be found on node n1"
            probed = len(probes)
            await asyncio.sleep(0.1)
            assert len(probes) == probed
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())

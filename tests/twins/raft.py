"""A Raft twin: commands apply synchronously to a real `StateMachine`, in order, at the next index.

It implements `Proposer` and `LeaderView` (endpoint ports) and the query runner's leader view, so
an endpoint, a leader routine and `QueryRunner` all run against it unchanged. Everything a
command does to state goes through the real fsm code (encode, validate, apply, notify watchers);
only consensus is skipped. Knobs a test turns:
- `leader`: False makes proposals fail with `RaftError`, as a follower's would;
- `failures`: that many proposals in a row fail as a lost quorum would;
- `before_apply`: runs once before the next proposal is applied (a concurrent writer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from meshfed.fsm import CAStateSet, Command, Result, StateMachine, encode_batch
from meshfed.fsm.state import StateStore
from meshfed.server.raft import PeerHealth, RaftError
from meshfed.server.requests.watch import WatchHub


class RaftTwin:
    def __init__(
        self,
        watches: WatchHub | None = None,
        *,
        self_address: str = "127.0.0.1:8300",
        peers: Sequence[str] = (),
        leader: bool = True,
    ) -> None:
        self.machine = StateMachine()
        self.watches = watches or WatchHub()
        self.machine.subscribe(lambda tables, index: self.watches.notify(tables, index))
        self.self_address = self_address
        self.peers = [p for p in peers if p != self_address]
        self.leader_flag = leader
        self.leader_address: str | None = self_address if leader else None
        self.index = 0
        self.commands: list[Command] = []
        self.failures = 0
        self.before_apply: Callable[[], None] | None = None

    @property
    def state(self) -> StateStore:
        return self.machine.state

    def apply_now(self, command: Command) -> Result:
        """Apply one command at the next index, bypassing the knobs (a write from elsewhere)."""
        self.index += 1
        self.commands.append(command)
        (result,) = self.machine.apply(self.index, encode_batch([("", command)]))
        return result

    def set_leader(self, leader: bool, leader_address: str | None = None) -> None:
        self.leader_flag = leader
        self.leader_address = self.self_address if leader else leader_address

    def ca_sets(self) -> list[CAStateSet]:
        return [c for c in self.commands if isinstance(c, CAStateSet)]

    # ---- Proposer ----------------------------------------------------------------------------------

    async def apply(self, commands: Sequence[tuple[str, Command]], timeout: float = 5.0) -> list[Result]:
        await asyncio.sleep(0)  # a real proposal yields: lets concurrent writers interleave
        if not self.leader_flag:
            raise RaftError("not the leader", maybe_applied=False)
        if self.failures:
            self.failures -= 1
            raise RaftError("no quorum", maybe_applied=False)
        if self.before_apply is not None:
            hook, self.before_apply = self.before_apply, None
            hook()
        self.index += 1
        self.commands.extend(command for _, command in commands)
        return self.machine.apply(self.index, encode_batch(list(commands)))

    async def barrier(self, timeout: float = 5.0) -> int:
        return self.index

    # ---- LeaderView --------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.leader_flag

    def leader(self) -> str | None:
        return self.leader_address

    def known_leader(self) -> bool:
        return self.leader_address is not None

    def last_contact(self) -> float:
        return 0.0 if self.leader_address is not None else float("inf")

    def peer_health(self) -> dict[str, PeerHealth]:
        """Every member alive: the twin has no network to lose a member on."""
        return {address: PeerHealth(True, 0.0) for address in [self.self_address, *self.peers]}

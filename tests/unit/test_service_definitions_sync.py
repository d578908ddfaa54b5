"""Applying the config files' service definitions: new ones registered, changed ones re-registered,
removed ones deregistered (only those that came from files, also across a restart), and a write
without a leader retried until it lands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from meshfed.rpc.errors import ERR_NO_LEADER, invalid, unavailable
from meshfed.server import service_definitions
from meshfed.server.config.services import ServiceDefinition
from meshfed.server.service_definitions import ServiceDefinitions


class FakeAgent:
    """The node's services as `AgentServices` shows them; the first `fail_next` writes fail."""

    node, address, datacenter = "n1", "127.0.0.1", "dc1"

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.failures: list[Exception] = []
        self.writes = 0

    def service(self, service_id: str) -> Any:
        row = self.rows.get(service_id)
        return SimpleNamespace(port=row["port"]) if row else None

    def sidecar_ports(self, excluding: str) -> set[int]:
        return {r["port"] for i, r in self.rows.items() if i != excluding and r["port"]}

    async def register_many(self, header: Any, body: dict[str, Any]) -> tuple[Any, Any]:
        self._write()
        for row in body["registrations"]:
            self.rows[row["service"]["id"]] = row["service"]
        return SimpleNamespace(index=1), True

    async def deregister_many(self, header: Any, body: dict[str, Any]) -> tuple[Any, Any]:
        self._write()
        for service_id in body["service_ids"]:
            del self.rows[service_id]
        return SimpleNamespace(index=1), True

    def _write(self) -> None:
        self.writes += 1
        if self.failures:
            raise self.failures.pop(0)


def definition(name: str, **fields: Any) -> ServiceDefinition:
    return ServiceDefinition("f.hcl", "services[0]", {"Name": name, **fields})


SIDECAR = {"Connect": {"SidecarService": {}}}


def run(sync: ServiceDefinitions, *definitions: ServiceDefinition) -> None:
    asyncio.run(sync.apply(definitions))


def test_apply_adds_changes_and_removes_only_file_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_definitions, "RETRY_DELAY", 0.01)
    agent = FakeAgent()
    sync = ServiceDefinitions(agent, token="", data_dir=str(tmp_path))  # type: ignore[arg-type]
    agent.failures = [unavailable(ERR_NO_LEADER), unavailable(ERR_NO_LEADER)]
    run(sync, definition("socat", Port=8181, **SIDECAR), definition("db"))
    assert set(agent.rows) == {"socat", "socat-sidecar-proxy", "db"}  # retried through two no-leader errors
    agent.rows["http-only"] = {"port": 0}  # registered over HTTP, not from a file
    writes = agent.writes
    run(sync, definition("socat", Port=8181, **SIDECAR), definition("db"))
    assert agent.writes == writes  # nothing changed, nothing written
    run(sync, definition("socat", Port=9000, **SIDECAR))
    assert set(agent.rows) == {"socat", "socat-sidecar-proxy", "http-only"}
    assert agent.rows["socat"]["port"] == 9000 and agent.rows["socat-sidecar-proxy"]["port"] == 21000

    # A restart: the new process knows from the data dir that socat came from a file.
    restarted = ServiceDefinitions(agent, token="", data_dir=str(tmp_path))  # type: ignore[arg-type]
    run(restarted, definition("cache"))
    assert set(agent.rows) == {"cache", "http-only"}


def test_a_refused_write_is_not_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = FakeAgent()
    agent.failures = [invalid("Permission denied")]
    sync = ServiceDefinitions(agent, token="", data_dir=None)  # type: ignore[arg-type]
    run(sync, definition("db"), definition("web"))
    assert set(agent.rows) == {"web"} and agent.writes == 2
    assert "registering 'db' (f.hcl: services[0]) refused: Permission denied" in caplog.text

"""A datacenter of real `meshfed agent` processes for integration tests (server/cli/launcher.py)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import requests

from meshfed.server.cli.launcher import ServerProcess, datacenter_servers, wait_for_leader
from meshfed.server.config.loader import generate_key


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (requests.RequestException, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


class Datacenter:
    def __init__(self, name: str, base: str, root: str, *, count: int = 3, config: dict[str, Any] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.name = name
        self.key = generate_key()
        self.servers: list[ServerProcess] = datacenter_servers(name, base, root, self.key, count, extra_args or [])
        if config:
            os.makedirs(root, exist_ok=True)
            path = os.path.join(root, f"{name}-extra.json")
            with open(path, "w") as f:
                json.dump(config, f)
            for server in self.servers:
                server.config_files.append(path)
        self.session = requests.Session()

    def start(self, timeout: float = 30.0) -> str:
        for server in self.servers:
            server.start()
        return self.wait_leader(timeout)

    def wait_leader(self, timeout: float = 20.0) -> str:
        try:
            return wait_for_leader(self.servers, timeout)
        except TimeoutError:
            raise AssertionError(f"no leader in {self.name}:\n{self.logs()}") from None

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def kill_all(self) -> None:
        for server in self.servers:
            if server.process is not None and server.process.poll() is None:
                server.process.kill()
        for server in self.servers:
            if server.process is not None:
                server.process.wait(10)

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {s.node} ({s.log_path}) ---\n{s.log_tail(lines)}" for s in self.servers)

    def by_rpc_address(self, address: str) -> ServerProcess:
        # /v1/status/leader answers the Raft address until the leader's own record has replicated
        # to the server asked (server/endpoints/status.py): right after an election, both occur.
        return next(s for s in self.servers if address in (s.rpc_address, s.raft_address))

    def leader(self, timeout: float = 10.0) -> ServerProcess:
        """The current leader, waiting out an election in progress (a restarted server can start one)."""

        def current() -> ServerProcess | None:
            live = next(s for s in self.servers if s.alive())
            address = self.session.get(live.http + "/v1/status/leader", timeout=5).json()
            return next((s for s in self.servers if s.rpc_address == address), None)

        return wait_until(current, timeout, what=f"a leader in {self.name}")

    def followers(self) -> list[ServerProcess]:
        leader = self.leader()
        return [s for s in self.servers if s is not leader and s.alive()]

    def get(self, server: ServerProcess, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(server.http + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def put(self, server: ServerProcess, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.put(server.http + path, json=body, timeout=kwargs.pop("timeout", 10), **kwargs)


def mesh_gateway_registration(node: str, lan: str, wan: str, port: int = 8443, wan_port: int = 443,
                              status: str = "passing", datacenter: str = "dc1") -> dict[str, Any]:
    """A catalog registration of a WAN-federation mesh gateway, as in reference/federation.md §4."""
    return {
        "Datacenter": datacenter,
        "Node": node,
        "Address": lan,
        "TaggedAddresses": {"lan": lan, "wan": wan},
        "Service": {
            "Kind": "mesh-gateway",
            "ID": "mesh-gateway",
            "Service": "mesh-gateway",
            "Address": lan,
            "Port": port,
            "TaggedAddresses": {"lan": {"Address": lan, "Port": port}, "wan": {"Address": wan, "Port": wan_port}},
            "Meta": {"consul-wan-federation": "1"},
        },
        "Check": {
            "CheckID": "service:mesh-gateway",
            "Name": "mesh gateway alive",
            "ServiceID": "mesh-gateway",
            "Status": status,
        },
    }

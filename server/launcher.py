"""Local multi-server launcher: real `meshfed agent` processes on 127.0.x.y addresses.

Used by `meshfed demo` and by the integration tests, so what the tests prove is what an operator
runs. Every server of a datacenter gets its own loopback address (127.0.<n>.1, .2, .3), so the
default ports (HTTP 8500, RPC 8300, Raft 8301) never collide and no port flags are needed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import generate_key

HTTP_PORT = 8500


@dataclass
class ServerProcess:
    node: str
    datacenter: str
    address: str
    data_dir: str
    peers: list[str]
    key: str
    extra_args: list[str] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)
    log_path: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://{self.address}:{HTTP_PORT}"

    @property
    def raft_address(self) -> str:
        return f"{self.address}:8301"

    def command(self) -> list[str]:
        args = [
            sys.executable, "-m", "server.cli", "agent", "-server",
            "-node", self.node, "-datacenter", self.datacenter, "-bind", self.address,
            "-data-dir", self.data_dir, "-encrypt", self.key,
            "-bootstrap-expect", str(len(self.peers) + 1),
        ]
        for peer in self.peers:
            args += ["-retry-join", peer]
        for path in self.config_files:
            args += ["-config-file", path]
        return args + self.extra_args

    def start(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        self.log_path = self.log_path or os.path.join(os.path.dirname(self.data_dir), f"{self.node}.log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=_project_root(), start_new_session=True
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9 (SIGKILL) — what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw.strip() else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = raw.decode(errors="replace")
        return exc.code, dict(exc.headers), body


def datacenter_servers(
    datacenter: str, base: str, data_root: str, key: str, count: int = 3, extra_args: Sequence[str] = ()
) -> list[ServerProcess]:
    addresses = [f"{base}.{i + 1}" for i in range(count)]
    return [
        ServerProcess(
            node=f"{datacenter}-s{i + 1}",
            datacenter=datacenter,
            address=address,
            data_dir=os.path.join(data_root, datacenter, f"s{i + 1}"),
            peers=[f"{a}:8301" for a in addresses if a != address],
            key=key,
            extra_args=list(extra_args),
        )
        for i, address in enumerate(addresses)
    ]


def wait_for_leader(servers: Sequence[ServerProcess], timeout: float = 20.0) -> str:
    """Wait until every live server reports the same leader and has published itself."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        leaders = set()
        try:
            for server in servers:
                if not server.alive():
                    continue
                status, _, leader = get_json(server.http + "/v1/status/leader", timeout=2)
                leaders.add(leader if status == 200 else "")
            if len(leaders) == 1 and "" not in leaders:
                leader = leaders.pop()
                live = [s for s in servers if s.alive()]
                _, _, members = get_json(live[0].http + "/v1/agent/members", timeout=2)
                if members and sum(1 for m in members if m["Status"] == 1) >= len(live):
                    return leader
            last = f"leaders seen: {sorted(leaders)}"
        except (OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"no agreed leader within {timeout}s ({last})")


def run_demo(base: str = "127.0.1", data_dir: str = "") -> int:
    """`meshfed demo`: start a 3-server primary datacenter and keep it running until Ctrl-C."""
    root = data_dir or tempfile.mkdtemp(prefix="meshfed-demo-")
    key = generate_key()
    servers = datacenter_servers("dc1", base, root, key)
    print(f"meshfed demo: data and logs in {root}")
    for server in servers:
        print(f"  starting {server.node} on {server.address} (HTTP {server.http})")
        server.start()
    try:
        leader = wait_for_leader(servers, timeout=30)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for server in servers:
            print(f"--- {server.node} log ---\n{server.log_tail()}", file=sys.stderr)
            server.stop()
        return 1
    print(f"datacenter dc1 is up; Raft leader {leader}")
    for server in servers:
        print(f"  {server.node}: HTTP API {server.http}   metrics {server.http}/v1/agent/metrics?format=prometheus")
    print(f"try: curl {servers[0].http}/v1/internal/federation-states   (Ctrl-C stops the demo)")
    try:
        while all(s.alive() for s in servers):
            time.sleep(0.5)
        print("a server exited; stopping the demo", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping")
        return 0
    finally:
        for server in servers:
            server.stop()

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

from meshfed.server.config.loader import generate_key

HTTP_PORT = 8500


class ChildProcess:
    """Lifecycle shared by the server and gateway processes; subclasses define `command()` and
    carry `process` and `log_path` fields."""

    process: subprocess.Popen[bytes] | None
    log_path: str

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9 (SIGKILL): what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait for the graceful shutdown; SIGKILL if it does not come."""
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


@dataclass
class ServerProcess(ChildProcess):
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

    @property
    def rpc_address(self) -> str:
        return f"{self.address}:8300"

    def command(self) -> list[str]:
        args = [
            sys.executable, "-m", "meshfed.server.cli", "agent", "-server",
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
        super().start()


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


GATEWAY_PORT = 8443
GATEWAY_ADMIN_PORT = 19000


@dataclass
class GatewayProcess(ChildProcess):
    """A `meshfed gateway` process on <base>.10, in front of one datacenter's servers."""

    datacenter: str
    address: str
    http_addrs: list[str]
    log_path: str
    port: int = GATEWAY_PORT
    node: str = ""
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bind(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://{self.address}:{GATEWAY_ADMIN_PORT}"

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "meshfed.server.cli", "gateway", "-dc", self.datacenter, "-bind", self.bind,
                "-wan-address", self.bind, "-expose-servers", "-admin-bind", f"{self.address}:{GATEWAY_ADMIN_PORT}",
                "-node", self.node or f"gw-{self.datacenter}-{self.address}"]
        for addr in self.http_addrs:
            args += ["-http-addr", addr]
        return args + self.extra_args



def federation_files(root: str, datacenter: str, primary: str, nodes: Sequence[str], primary_gateways: Sequence[str],
                     extra: dict[str, Any] | None = None) -> list[str]:
    """TLS material and one config file per server of `datacenter`; returns the config paths."""
    from meshfed.rpc.tls import CertFiles, create_ca, create_server_cert

    tls_dir = os.path.join(root, "tls")
    os.makedirs(tls_dir, exist_ok=True)
    ca_cert = os.path.join(tls_dir, "consul-agent-ca.pem")
    ca = CertFiles(ca_cert, os.path.join(tls_dir, "consul-agent-ca-key.pem")) if os.path.exists(ca_cert) else create_ca(tls_dir)
    paths = []
    for node in nodes:
        cert = create_server_cert(tls_dir, ca, datacenter, node=node)
        config: dict[str, Any] = {
            "primary_datacenter": primary,
            "connect": {"enabled": True, "enable_mesh_gateway_wan_federation": True},
            "tls": {
                "defaults": {"ca_file": ca.cert_file, "cert_file": cert.cert_file, "key_file": cert.key_file,
                             "verify_incoming": True, "verify_outgoing": True},
                "internal_rpc": {"verify_server_hostname": True},
            },
        }
        if datacenter != primary:
            config["primary_gateways"] = list(primary_gateways)
        config.update(extra or {})
        path = os.path.join(root, f"{node}.json")
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
        paths.append(path)
    return paths


@dataclass
class FederatedDatacenter:
    name: str
    servers: list[ServerProcess]
    gateway: GatewayProcess


def federated_datacenters(
    root: str, bases: Sequence[str], names: Sequence[str] = ("dc1", "dc2"), extra: dict[str, Any] | None = None
) -> list[FederatedDatacenter]:
    """Primary = names[0]. Each DC: 3 servers on <base>.1-3 and a gateway on <base>.10."""
    primary = names[0]
    primary_gateway = f"{bases[0]}.10:{GATEWAY_PORT}"
    result = []
    for name, base in zip(names, bases, strict=True):
        key = generate_key()
        servers = datacenter_servers(name, base, root, key)
        configs = federation_files(root, name, primary, [s.node for s in servers], [primary_gateway], extra)
        for server, path in zip(servers, configs, strict=True):
            server.config_files.append(path)
        gateway = GatewayProcess(name, f"{base}.10", [f"{s.address}:{HTTP_PORT}" for s in servers],
                                 os.path.join(root, f"gateway-{name}.log"))
        result.append(FederatedDatacenter(name, servers, gateway))
    return result


def processes_of(dcs: Sequence[FederatedDatacenter]) -> list[ServerProcess | GatewayProcess]:
    return [p for dc in dcs for p in (*dc.servers, dc.gateway)]


def federation_converged(dcs: Sequence[FederatedDatacenter]) -> bool:
    """Every live server of every DC lists every DC with at least one mesh gateway."""
    names = {dc.name for dc in dcs}
    for dc in dcs:
        for server in dc.servers:
            if not server.alive():
                continue
            try:
                status, _, view = get_json(server.http + "/v1/internal/federation-states/mesh-gateways?stale", timeout=5)
            except (OSError, ValueError):
                return False
            if status != 200 or not all((view or {}).get(name) for name in names):
                return False
    return True


def wait_for_federation(dcs: Sequence[FederatedDatacenter], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not federation_converged(dcs):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"federation did not converge within {timeout:.0f}s")
        time.sleep(0.25)


def start_federation(dcs: Sequence[FederatedDatacenter], timeout: float = 60.0) -> None:
    """Start every server and gateway, then wait for a leader per DC and for convergence."""
    for process in processes_of(dcs):
        process.start()
    for dc in dcs:
        wait_for_leader(dc.servers, timeout=timeout)
    wait_for_federation(dcs, timeout)


def _demo_failure(message: str, processes: Sequence[ServerProcess | GatewayProcess]) -> int:
    print(f"error: {message}", file=sys.stderr)
    for process in processes:
        print(f"--- {getattr(process, 'node', '') or process.datacenter} log ---\n{process.log_tail()}", file=sys.stderr)
    return 1


def run_demo(base: str = "127.0.1", data_dir: str = "") -> int:
    """`meshfed demo`: a primary dc1 and a secondary dc2 (3 servers each) federated through one mesh
    gateway per DC, with generated TLS certificates; runs until Ctrl-C."""
    root = data_dir or tempfile.mkdtemp(prefix="meshfed-demo-")
    prefix, _, third = base.rpartition(".")
    bases = [base, f"{prefix}.{int(third) + 1}"]
    print(f"meshfed demo: data, certificates and logs in {root}")
    print("  making a CA and server certificates (server.<dc>.consul, <node>.server.<dc>.consul)")
    dcs = federated_datacenters(root, bases)
    everything = processes_of(dcs)
    try:
        for dc in dcs:
            for server in dc.servers:
                print(f"  starting {dc.name} server {server.node} on {server.address}")
                server.start()
            print(f"  starting {dc.name} mesh gateway on {dc.gateway.bind}")
            dc.gateway.start()
        for dc in dcs:
            try:
                leader = wait_for_leader(dc.servers, timeout=30)
            except TimeoutError as exc:
                return _demo_failure(str(exc), everything)
            print(f"  {dc.name} has a leader: {leader}")
        print("  waiting for both datacenters to see each other's gateways ...")
        try:
            wait_for_federation(dcs, timeout=60)
        except TimeoutError as exc:
            return _demo_failure(str(exc), everything)
        print("federation is up.")
        for dc in dcs:
            print(f"  {dc.name}:")
            for server in dc.servers:
                print(f"    {server.node}: HTTP API {server.http}   metrics {server.http}/v1/agent/metrics?format=prometheus")
            print(f"    mesh gateway {dc.gateway.bind}: metrics {dc.gateway.admin}/metrics   routes {dc.gateway.admin}/v1/gateway/routes")
        print(f"try: curl {dcs[1].servers[0].http}/v1/internal/federation-states?dc=dc1   (Ctrl-C stops the demo)")
        while all(p.alive() for p in everything):
            time.sleep(0.5)
        return _demo_failure("a process exited; stopping the demo", [p for p in everything if not p.alive()])
    except KeyboardInterrupt:
        print("stopping")
        return 0
    finally:
        for process in everything:
            process.stop()

"""Local multi-server launcher: real `meshfed agent` processes on 127.0.x.y addresses.

Used by `meshfed demo` and by the integration tests, so what the tests prove is what an operator
runs. Every server of a datacenter gets its own loopback address (127.0.<n>.1, .2, .3), so the
default ports (HTTP 8500, RPC 8300, Raft 8301) never collide and no port flags are needed.

The cluster key reaches a server through a config file only its owner can read, never through
`-encrypt`: a command line is visible to every local user in `ps` and /proc/<pid>/cmdline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from meshfed.server.config.loader import Ports, generate_key

HTTP_PORT = 8500


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold the stop signals while a child is spawned, and deliver them once `process` is set.

    `meshfed demo` stops by raising from its signal handler. Raised inside `Popen` after the fork,
    the exception left a child running that no `process` field named, so nothing stopped it (a
    SIGHUP while the demo started its gateways). Only the main thread runs Python signal handlers,
    so elsewhere there is nothing to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _: caught.append(signum)) for sig in HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in caught:
            signal.raise_signal(signum)


class ChildProcess:
    """Lifecycle shared by the server and gateway processes; subclasses define `command()` and
    carry `process` and `log_path` fields."""

    process: subprocess.Popen[bytes] | None
    log_path: str

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            with _signals_held():
                self.process = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        finally:
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

    def listen_addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) this process binds, so a launcher can check them before starting."""
        raise NotImplementedError

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
        return f"{self.address}:{Ports().raft}"

    @property
    def key_file(self) -> str:
        """The config file that carries `encrypt`, written 0600 next to the data directory."""
        return os.path.join(os.path.dirname(self.data_dir), f"{self.node}-encrypt.json")

    def listen_addresses(self) -> list[tuple[str, int]]:
        ports = Ports()
        return [(self.address, port) for port in (ports.http, ports.server, ports.raft)]

    @property
    def rpc_address(self) -> str:
        return f"{self.address}:8300"

    def command(self) -> list[str]:
        args = [
            sys.executable, "-m", "meshfed.server.cli", "agent", "-server",
            "-node", self.node, "-datacenter", self.datacenter, "-bind", self.address,
            "-data-dir", self.data_dir, "-config-file", self.key_file,
            "-bootstrap-expect", str(len(self.peers) + 1),
        ]
        for peer in self.peers:
            args += ["-retry-join", peer]
        for path in self.config_files:
            args += ["-config-file", path]
        return args + self.extra_args

    def start(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        write_private_file(self.key_file, json.dumps({"encrypt": self.key}))
        self.log_path = self.log_path or os.path.join(os.path.dirname(self.data_dir), f"{self.node}.log")
        super().start()


def write_private_file(path: str, text: str) -> None:
    """Write `text` to `path`, readable by its owner only, from the first byte on: the file is
    created 0600 rather than chmod-ed after the write, and an existing file is narrowed too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def busy_addresses(addresses: Sequence[tuple[str, int]]) -> list[str]:
    """The `host:port`s of `addresses` that something already listens on (or that cannot be bound).

    SO_REUSEADDR keeps sockets of a previous run in TIME_WAIT from counting as busy; a listener
    still makes the bind fail."""
    busy = []
    for host, port in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                busy.append(f"{host}:{port} ({error.strerror})")
    return busy


def stop_all(processes: Sequence[ChildProcess], timeout: float = 10.0) -> None:
    """SIGTERM every process at once, wait for all of them, then SIGKILL whichever is left, so
    stopping N processes takes one grace period, not N."""
    running = [p for p in processes if p.alive()]
    for process in running:
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        assert process.process is not None
        try:
            process.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def get_json(url: str, timeout: float = 5.0, token: str = "") -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("X-Consul-Token", token)
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
    """Wait until every live server reports the same leader and has published itself (the latter
    only where the members list is visible without a token)."""
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
                _, headers, members = get_json(live[0].http + "/v1/agent/members", timeout=2)
                if members and sum(1 for m in members if m["Status"] == 1) >= len(live):
                    return leader
                if headers.get("X-Consul-Results-Filtered-By-ACLs") == "true":
                    # ACLs with a deny default hide members from a caller without a token (as
                    # Consul's do): the agreed leader is all this check can see.
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

    def listen_addresses(self) -> list[tuple[str, int]]:
        return [(self.address, self.port), (self.address, GATEWAY_ADMIN_PORT)]

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "meshfed.server.cli", "gateway", "-dc", self.datacenter, "-bind", self.bind,
                "-wan-address", self.bind, "-expose-servers", "-admin-bind", f"{self.address}:{GATEWAY_ADMIN_PORT}",
                "-node", self.node or f"gw-{self.datacenter}-{self.address}"]
        for addr in self.http_addrs:
            args += ["-http-addr", addr]
        return args + self.extra_args



@dataclass
class MeshProcess(ChildProcess):
    """A `meshfed connect ...` process (a Connect proxy or the echo service): its arguments say
    everything, so the demo and the tests start exactly what an operator would type."""

    name: str
    args: list[str]
    log_path: str
    listens: list[tuple[str, int]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "meshfed.server.cli", "connect", *self.args]

    def listen_addresses(self) -> list[tuple[str, int]]:
        return list(self.listens)


def federation_files(root: str, datacenter: str, primary: str, nodes: Sequence[str], primary_gateways: Sequence[str],
                     extra: dict[str, Any] | None = None, peering: bool = False) -> list[str]:
    """TLS material (one CA per `root`) and one config file per server of `datacenter`; returns the
    config paths. `peering`: an independent cluster (its own primary, no WAN federation) whose
    servers take TLS connections without a client certificate of their CA: a peer's leader dials
    them with a certificate of its own cluster's CA (reference peering.md §2)."""
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
            "connect": {"enabled": True, "enable_mesh_gateway_wan_federation": not peering},
            "tls": {
                "defaults": {"ca_file": ca.cert_file, "cert_file": cert.cert_file, "key_file": cert.key_file,
                             "verify_incoming": not peering, "verify_outgoing": True},
                "internal_rpc": {"verify_server_hostname": True},
            },
        }
        if datacenter != primary:
            config["primary_gateways"] = list(primary_gateways)
        config.update(extra or {})
        path = os.path.join(root, f"{node}.json")
        # 0600: a config may carry ACL tokens (the server refuses group/world-readable key files too).
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(config, f, indent=2)
        paths.append(path)
    return paths


@dataclass
class FederatedDatacenter:
    name: str
    servers: list[ServerProcess]
    gateway: GatewayProcess


def federated_datacenters(
    root: str, bases: Sequence[str], names: Sequence[str] = ("dc1", "dc2"), extra: dict[str, Any] | None = None,
    per_dc: dict[str, dict[str, Any]] | None = None,
) -> list[FederatedDatacenter]:
    """Primary = names[0]. Each DC: 3 servers on <base>.1-3 and a gateway on <base>.10. `extra`
    config goes to every server, `per_dc[name]` to the servers of one DC (e.g. its ACL block)."""
    primary = names[0]
    primary_gateway = f"{bases[0]}.10:{GATEWAY_PORT}"
    result = []
    for name, base in zip(names, bases, strict=True):
        key = generate_key()
        servers = datacenter_servers(name, base, root, key)
        configs = federation_files(root, name, primary, [s.node for s in servers], [primary_gateway],
                                   {**(extra or {}), **(per_dc or {}).get(name, {})})
        for server, path in zip(servers, configs, strict=True):
            server.config_files.append(path)
        gateway = GatewayProcess(name, f"{base}.10", [f"{s.address}:{HTTP_PORT}" for s in servers],
                                 os.path.join(root, f"gateway-{name}.log"))
        result.append(FederatedDatacenter(name, servers, gateway))
    return result


def processes_of(dcs: Sequence[FederatedDatacenter]) -> list[ServerProcess | GatewayProcess]:
    return [p for dc in dcs for p in (*dc.servers, dc.gateway)]


def federation_converged(dcs: Sequence[FederatedDatacenter], token: str = "") -> bool:
    """Every live server of every DC lists every DC with at least one mesh gateway (as `token`
    sees them: with default-deny ACLs an anonymous caller sees none)."""
    names = {dc.name for dc in dcs}
    for dc in dcs:
        for server in dc.servers:
            if not server.alive():
                continue
            try:
                status, _, view = get_json(server.http + "/v1/internal/federation-states/mesh-gateways?stale", timeout=5,
                                           token=token)
            except (OSError, ValueError):
                return False
            if status != 200 or not all((view or {}).get(name) for name in names):
                return False
    return True


def wait_for_federation(dcs: Sequence[FederatedDatacenter], timeout: float = 60.0, token: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not federation_converged(dcs, token):
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

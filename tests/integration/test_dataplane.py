"""Service traffic across datacenters (issue #10): web in dc2 calls socat in dc1 through meshfed's
own Connect proxies and both mesh gateways, with mutual TLS end to end (reference/mesh-dataplane.md
§8, the operators' walkthrough).

Real processes only: two 3-server DCs, one gateway each, an echo service and its sidecar in dc1,
web's proxy in dc2. The mesh-gateway mode (proxy-defaults) decides the first hop, checked by
looking at the sockets web's proxy really holds; intentions decide at socat's sidecar.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from meshfed.server.cli.launcher import (
    FederatedDatacenter,
    MeshProcess,
    ServerProcess,
    federated_datacenters,
    processes_of,
    start_federation,
)
from tests.ports import local_port

from .conftest import next_block
from .harness import wait_until
from .test_federation import leader_of, tcp_peers

S = requests.Session()
ECHO_PORT, SIDECAR_PORT = 9090, 21000  # the sidecar gets the first port of Consul's range
UPSTREAM_PORT = local_port(0)  # web's local socat listener on 127.0.0.1


def http(server: ServerProcess, method: str, path: str, body: Any = None) -> requests.Response:
    return S.request(method, server.http + path, json=body, timeout=15)


def echo_through(port: int, payload: bytes = b"hello mesh", timeout: float = 5.0) -> bytes:
    """Send `payload`, read as many bytes back (TLS has no half-close to signal the end with)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload) and (chunk := conn.recv(65536)):
            received += chunk
        return received


def echoes(port: int) -> bool:
    try:
        return echo_through(port) == b"hello mesh"
    except OSError:
        return False


def metric(admin: str, sample: str) -> float:
    for line in S.get(f"http://{admin}/metrics", timeout=5).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def set_mode(dc1: FederatedDatacenter, mode: str) -> None:
    body = {"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": mode}}
    assert http(dc1.servers[0], "PUT", "/v1/config", body).status_code == 200


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = str(tmp_path_factory.mktemp("dataplane"))
    dcs = federated_datacenters(root, [f"127.0.{next_block()}", f"127.0.{next_block()}"])
    dc1, dc2 = dcs
    app_host = dc1.servers[0].address.rsplit(".", 1)[0] + ".30"
    processes: list[Any] = processes_of(dcs)
    web_host = dc2.servers[0].address.rsplit(".", 1)[0] + ".30"
    mesh_processes: dict[str, MeshProcess] = {
        "echo": MeshProcess("echo", ["echo", "-listen", f"{app_host}:{ECHO_PORT}"], f"{root}/echo.log"),
        "socat-proxy": MeshProcess("socat-proxy", [
            "proxy", "-sidecar-for", "socat", "-http-addr", f"{dc1.servers[0].address}:8500",
            "-http-addr", f"{dc1.servers[1].address}:8500", "-admin-bind", f"{app_host}:19100"], f"{root}/socat-proxy.log"),
        "web-proxy": MeshProcess("web-proxy", [
            "proxy", "-sidecar-for", "web", "-http-addr", f"{dc2.servers[0].address}:8500",
            "-admin-bind", f"{web_host}:19100"], f"{root}/web-proxy.log"),
    }
    try:
        start_federation(dcs, timeout=60)
        # The walkthrough's registrations, through each DC's agent API (Consul's JSON); addresses
        # are pinned to loopback blocks instead of the sidecar's default 0.0.0.0.
        socat = {"ID": "socat", "Name": "socat", "Port": ECHO_PORT, "Address": app_host, "Connect": {"SidecarService": {
            "Proxy": {"LocalServiceAddress": app_host, "Config": {"bind_address": app_host}}}}}
        web = {"Name": "web", "Port": 8080, "Address": web_host, "Connect": {"SidecarService": {"Proxy": {
            "Config": {"bind_address": web_host},
            "Upstreams": [{"DestinationName": "socat", "Datacenter": "dc1", "LocalBindPort": UPSTREAM_PORT}]}}}}
        assert http(dc1.servers[0], "PUT", "/v1/agent/service/register", socat).status_code == 200
        assert http(dc2.servers[0], "PUT", "/v1/agent/service/register", web).status_code == 200
        set_mode(dc1, "local")
        for process in mesh_processes.values():
            process.start()
        yield {"dc1": dc1, "dc2": dc2, "app_host": app_host, "web_host": web_host, **mesh_processes}
    finally:
        for process in [*mesh_processes.values(), *processes]:
            if os.environ.get("MESHFED_KEEP_LOGS") or not process.alive():
                print(f"--- {getattr(process, 'name', '') or getattr(process, 'node', '')} ---\n{process.log_tail(40)}")
            process.stop()


def web_proxy_peers(mesh: dict[str, Any]) -> set[tuple[str, int]]:
    return tcp_peers(mesh["web-proxy"].process.pid)


def test_web_in_dc2_reaches_socat_in_dc1_through_both_gateways(mesh: dict[str, Any]) -> None:
    dc1, dc2 = mesh["dc1"], mesh["dc2"]
    wait_until(lambda: echoes(UPSTREAM_PORT), 60, interval=0.5, what="bytes echoed from dc1 through the mesh")
    assert echo_through(UPSTREAM_PORT, b"x" * 200_000) == b"x" * 200_000

    # Mode local: web's proxy holds a connection to its own gateway and to no dc1 address.
    with socket.create_connection(("127.0.0.1", UPSTREAM_PORT), timeout=5) as held:
        held.sendall(b"ping")
        assert held.recv(4) == b"ping"
        peers = web_proxy_peers(mesh)
        assert (dc2.gateway.address, dc2.gateway.port) in peers
        assert not any(host.startswith(dc1.servers[0].address.rsplit(".", 1)[0] + ".") for host, _ in peers)
    routes = S.get(dc1.gateway.admin + "/metrics", timeout=5).text
    assert 'route="service:socat"' in routes
    assert 'route="service-remote:dc1"' in S.get(dc2.gateway.admin + "/metrics", timeout=5).text


def test_mode_remote_dials_dc1s_gateway_and_none_dials_the_sidecar(mesh: dict[str, Any]) -> None:
    dc1 = mesh["dc1"]
    try:
        for mode, expected in (("remote", (dc1.gateway.address, dc1.gateway.port)),
                               ("none", (mesh["app_host"], SIDECAR_PORT))):
            set_mode(dc1, mode)

            def first_hop_is(expected: tuple[str, int] = expected) -> bool:
                try:
                    with socket.create_connection(("127.0.0.1", UPSTREAM_PORT), timeout=5) as held:
                        held.sendall(b"ping")
                        return held.recv(4) == b"ping" and expected in web_proxy_peers(mesh)
                except OSError:
                    return False

            wait_until(first_hop_is, 20, interval=0.3, what=f"mode {mode}: first hop {expected}")
    finally:
        set_mode(dc1, "local")


def test_a_deny_intention_closes_new_connections_and_is_counted(mesh: dict[str, Any]) -> None:
    dc1 = mesh["dc1"]
    admin = f"{mesh['app_host']}:19100"
    denied_before = metric(admin, 'meshfed_proxy_connections_total{direction="inbound",outcome="denied",upstream="socat"}')
    path = "/v1/connect/intentions/exact?source=web&destination=socat"
    assert http(dc1.servers[0], "PUT", path, {"Action": "deny"}).status_code == 200
    try:
        wait_until(lambda: not echoes(UPSTREAM_PORT), 10, interval=0.3, what="the deny takes effect")
        denied = metric(admin, 'meshfed_proxy_connections_total{direction="inbound",outcome="denied",upstream="socat"}')
        assert denied > denied_before
    finally:
        assert http(dc1.servers[0], "PUT", path, {"Action": "allow"}).status_code == 200
    wait_until(lambda: echoes(UPSTREAM_PORT), 10, interval=0.3, what="allowed again")


def test_a_client_without_mesh_tls_is_refused_at_the_sidecar_and_counted(mesh: dict[str, Any]) -> None:
    """Plain TCP or a failed handshake on the public port never reaches the application, and an
    operator sees it in the proxy's outcome counter (mesh-dataplane issue: `TLS failed`)."""
    admin = f"{mesh['app_host']}:19100"
    sample = 'meshfed_proxy_connections_total{direction="inbound",outcome="tls_failed",upstream="socat"}'
    before = metric(admin, sample)
    with socket.create_connection((mesh["app_host"], SIDECAR_PORT), timeout=5) as plain:
        plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
        plain.settimeout(5)
        try:
            reply = plain.recv(100)
        except ConnectionResetError:
            reply = b""
    assert b"HTTP" not in reply  # nothing of the echo service came back
    wait_until(lambda: metric(admin, sample) > before, 10, what="the failed handshake is counted")


def test_losing_the_only_sidecar_fails_fast_and_a_new_one_is_used_without_restarts(mesh: dict[str, Any]) -> None:
    sidecar = mesh["socat-proxy"]
    sidecar.kill()
    started = time.monotonic()
    assert not echoes(UPSTREAM_PORT)
    assert time.monotonic() - started < 5, "a dead sidecar must fail the connection fast"
    sidecar.start()
    wait_until(lambda: echoes(UPSTREAM_PORT), 30, interval=0.3, what="the restarted sidecar serves again")


def test_a_killed_gateway_comes_back_and_new_connections_work(mesh: dict[str, Any]) -> None:
    gateway = mesh["dc2"].gateway
    gateway.kill()
    assert not echoes(UPSTREAM_PORT)
    gateway.start()
    wait_until(lambda: echoes(UPSTREAM_PORT), 30, interval=0.3, what="traffic through the restarted gateway")


def test_agent_services_show_sidecar_defaults_and_deregistration_takes_the_sidecar_along(mesh: dict[str, Any]) -> None:
    dc1 = mesh["dc1"]
    services = http(dc1.servers[0], "GET", "/v1/agent/services").json()
    sidecar = services["socat-sidecar-proxy"]
    assert (sidecar["Kind"], sidecar["Service"], sidecar["Port"]) == ("connect-proxy", "socat-sidecar-proxy", SIDECAR_PORT)
    assert sidecar["Proxy"]["DestinationServiceName"] == "socat" and sidecar["Proxy"]["LocalServicePort"] == ECHO_PORT
    assert "SidecarService" not in services["socat"]["Connect"]
    extra = {"Name": "extra", "Port": 7000, "Address": mesh["app_host"], "Connect": {"SidecarService": {}}}
    assert http(dc1.servers[0], "PUT", "/v1/agent/service/register", extra).status_code == 200
    assert http(dc1.servers[0], "GET", "/v1/agent/service/extra-sidecar-proxy").json()["Port"] == SIDECAR_PORT + 1
    assert http(dc1.servers[0], "PUT", "/v1/agent/service/deregister/extra").status_code == 200
    remaining = http(dc1.servers[0], "GET", "/v1/agent/services").json()
    assert "extra" not in remaining and "extra-sidecar-proxy" not in remaining
    missing = http(dc1.servers[0], "PUT", "/v1/agent/service/deregister/extra")
    assert (missing.status_code, missing.text) == (404, 'Unknown service ID "extra"')
    bad = http(dc1.servers[0], "PUT", "/v1/agent/service/register", {"Name": "p", "Kind": "connect-proxy", "Port": 1})
    assert (bad.status_code, bad.text) == (400, "Proxy.DestinationServiceName must be set")


def test_a_follower_agent_reads_its_own_registrations_at_once(mesh: dict[str, Any]) -> None:
    """Read-your-writes: a registration acknowledged by an agent that is a Raft follower is in that
    agent's answers the moment the PUT returns (the follower may apply the entry after the leader
    answered it; CI once read a 404 there). Each registration also allocates the next free sidecar
    port from the agent's own view, so a stale view would hand out a port twice."""
    dc1 = mesh["dc1"]
    leader = wait_until(lambda: leader_of(dc1), 15, what="a dc1 leader")
    follower = next(s for s in dc1.servers if s is not leader)
    ids = [f"ryw{n}" for n in range(15)]
    ports = []
    for sid in ids:
        body = {"Name": sid, "Port": 7100, "Address": mesh["app_host"], "Connect": {"SidecarService": {}}}
        assert http(follower, "PUT", "/v1/agent/service/register", body).status_code == 200
        read = http(follower, "GET", f"/v1/agent/service/{sid}-sidecar-proxy")
        assert read.status_code == 200, read.text
        ports.append(read.json()["Port"])
    assert len(set(ports)) == len(ports)
    for sid in ids:
        assert http(follower, "PUT", f"/v1/agent/service/deregister/{sid}").status_code == 200
        assert http(follower, "GET", f"/v1/agent/service/{sid}").status_code == 404


def test_a_root_rotation_renews_both_leaves_without_dropping_an_open_connection(mesh: dict[str, Any]) -> None:
    """mesh-dataplane §4.4: new leaves (here forced by a root rotation) apply to new handshakes; a
    connection opened before keeps flowing."""
    dc1 = mesh["dc1"]
    admins = [f"{mesh['app_host']}:19100", f"{mesh['web_host']}:19100"]
    expiry = "meshfed_proxy_leaf_expiry_timestamp_seconds"
    wait_until(lambda: all(metric(a, expiry) for a in admins), 30, what="both proxies hold a leaf")
    before = [metric(a, expiry) for a in admins]
    with socket.create_connection(("127.0.0.1", UPSTREAM_PORT), timeout=5) as held:
        held.sendall(b"before")
        assert held.recv(6) == b"before"
        config = http(dc1.servers[0], "GET", "/v1/connect/ca/configuration").json()["Config"]
        rotated = {**config, "PrivateKeyBits": 384 if config["PrivateKeyBits"] == 256 else 256}
        assert http(dc1.servers[0], "PUT", "/v1/connect/ca/configuration",
                    {"Provider": "consul", "Config": rotated}).status_code == 200
        wait_until(lambda: all(metric(a, expiry) != b for a, b in zip(admins, before, strict=True)), 60,
                   interval=0.5, what="both proxies swapped to a leaf of the new root")
        held.sendall(b"after")
        assert held.recv(5) == b"after", "the open connection broke when the leaves changed"
    wait_until(lambda: echoes(UPSTREAM_PORT), 20, interval=0.3, what="new connections with the new leaves")

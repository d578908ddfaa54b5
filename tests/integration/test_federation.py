"""Two datacenters federated through mesh gateways, with TLS everywhere (issue #3).

One primary (dc1) and one secondary (dc2), 3 servers each, one `meshfed gateway` per DC, real
certificates. The steps follow the issue's numbering; each docstring cites the behaviour it pins
in reference/federation.md. Tests run in file order against one federation (a fresh one costs
~15 s on two cores) and leave it healthy for the next.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography import x509

from meshfed.fsm.records import (
    KIND_MESH_GATEWAY,
    CheckServiceNode,
    FederationState,
    Node,
    NodeService,
    to_wire,
)
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.header import RequestHeader
from meshfed.rpc.tls import load_channel_credentials
from meshfed.server.cli.launcher import (
    FederatedDatacenter,
    GatewayProcess,
    ServerProcess,
    federated_datacenters,
    processes_of,
    start_federation,
    wait_for_leader,
)

from .conftest import next_block
from .harness import mesh_gateway_registration, wait_until

S = requests.Session()


def get(server: ServerProcess, path: str, **kwargs: Any) -> requests.Response:
    return S.get(server.http + path, timeout=kwargs.pop("timeout", 15), **kwargs)


def put(server: ServerProcess, path: str, body: Any = None) -> requests.Response:
    return S.put(server.http + path, json=body, timeout=15)


def leader_of(dc: FederatedDatacenter) -> ServerProcess:
    live = next(s for s in dc.servers if s.alive())
    address = get(live, "/v1/status/leader").json()
    for server in dc.servers:
        if server.rpc_address == address:
            return server
    raise ValueError(f"{dc.name} has no leader right now")  # wait_until retries on ValueError


def gateway_names(server: ServerProcess, datacenter: str) -> list[str]:
    body = get(server, "/v1/internal/federation-states/mesh-gateways?stale").json()
    return sorted(g["Node"]["Node"] for g in body.get(datacenter, []))


def gateway_counter(gateway: GatewayProcess, route: str, outcome: str = "opened") -> float:
    text = S.get(gateway.admin + "/metrics", timeout=5).text
    prefix = "meshfed_gateway_connections_total{"
    for line in text.splitlines():
        if line.startswith(prefix) and f'route="{route}"' in line and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def locator(server: ServerProcess) -> dict[str, Any]:
    return get(server, "/v1/internal/gateway-locator").json()


def replication(server: ServerProcess) -> dict[str, Any]:
    return get(server, "/v1/internal/replication").json()["Types"][0]


def _proc_address(hex_address: str) -> str:
    """/proc/net/tcp{,6} address -> dotted IPv4 (v4-mapped IPv6 included) or IPv6 text."""
    raw = b"".join(bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8))
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)


def tcp_peers(pid: int) -> set[tuple[str, int]]:
    """Remote endpoints of the established TCP connections a process holds (from /proc).

    gRPC uses IPv6 sockets with v4-mapped addresses, so both tcp and tcp6 tables are read."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    peers = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] != "01" or int(fields[9]) not in inodes:
                    continue
                host_hex, port_hex = fields[2].split(":")
                peers.add((_proc_address(host_hex), int(port_hex, 16)))
    return peers


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[FederatedDatacenter]]:
    root = str(tmp_path_factory.mktemp("federation"))
    dcs = federated_datacenters(root, [f"127.0.{next_block()}", f"127.0.{next_block()}"])
    processes: list[Any] = processes_of(dcs)
    extra: list[GatewayProcess] = []
    try:
        start_federation(dcs, timeout=60)
        dcs[0].extra_gateways = extra  # type: ignore[attr-defined]
        dcs[0].root = root  # type: ignore[attr-defined]
        yield dcs
    finally:
        for process in processes + extra:
            if os.environ.get("MESHFED_KEEP_LOGS") or (hasattr(process, "alive") and not process.alive()):
                print(f"--- {getattr(process, 'node', '') or process.datacenter} ---\n{process.log_tail(60)}")
            process.stop()


# ---- step 1 -----------------------------------------------------------------------------------


def test_step1_tls_cli_writes_consul_named_certificates(tmp_path: Any) -> None:
    run = lambda *args: subprocess.run([sys.executable, "-m", "meshfed.server.cli", "tls", *args],  # noqa: E731
                                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run("ca", "create").returncode == 0
    result = run("cert", "create", "-server", "-dc", "dc2", "-node", "s1")
    assert result.returncode == 0, result.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "dc2-server-consul-0.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) >= {"server.dc2.consul", "s1.server.dc2.consul", "localhost"}
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert (tmp_path / "consul-agent-ca-key.pem").stat().st_mode & 0o077 == 0
    assert run("ca", "create").returncode == 1  # never overwrites a CA


# ---- steps 3 and 4 ------------------------------------------------------------------------------


def test_step3_every_server_of_both_dcs_lists_both_with_their_gateways(fed: list[FederatedDatacenter]) -> None:
    views = [get(s, "/v1/internal/federation-states/mesh-gateways?stale").json() for dc in fed for s in dc.servers]
    assert all(set(v) == {"dc1", "dc2"} for v in views)
    assert all(v == views[0] for v in views), "mesh-gateway lists differ between servers"
    for dc in fed:
        states = get(dc.servers[1], "/v1/internal/federation-states?stale").json()
        assert [s["Datacenter"] for s in states] == ["dc1", "dc2"]
        dc2_state = next(s for s in states if s["Datacenter"] == "dc2")
        assert dc2_state["PrimaryModifyIndex"] >= 1


def test_step3_a_secondary_answers_for_the_primary_through_the_gateways(fed: list[FederatedDatacenter]) -> None:
    dc1, dc2 = fed
    remote = get(dc2.servers[2], "/v1/internal/federation-states?dc=dc1")
    assert remote.status_code == 200, remote.text
    direct = get(leader_of(dc1), "/v1/internal/federation-states")
    assert remote.json() == direct.json()
    assert remote.headers["X-Consul-Index"] == direct.headers["X-Consul-Index"]
    back = get(dc1.servers[0], "/v1/internal/federation-state/dc2?dc=dc2")
    assert back.status_code == 200 and back.json()["State"]["Datacenter"] == "dc2"
    unknown = get(dc1.servers[0], "/v1/internal/federation-states?dc=dc9")
    assert unknown.status_code == 503 and "dc9" in unknown.text


def test_datacenter_parameter_is_answered_by_that_datacenter_or_refused(fed: list[FederatedDatacenter]) -> None:
    """Issue #8 item 5: `?dc=` (or a body's Datacenter) routes to that DC; an unknown one is refused."""
    dc1, dc2 = fed
    asked = dc2.servers[0]
    assert get(asked, "/v1/status/leader?dc=dc1").json() == leader_of(dc1).rpc_address
    assert sorted(get(asked, "/v1/status/peers?dc=dc1").json()) == sorted(s.rpc_address for s in dc1.servers)
    raft = get(asked, "/v1/operator/raft/configuration?dc=dc1").json()
    assert {s["Node"] for s in raft["Servers"]} == {s.node for s in dc1.servers}
    assert get(dc1.servers[1], "/v1/status/leader?dc=dc2").json() == leader_of(dc2).rpc_address
    for path in ("/v1/status/leader", "/v1/status/peers", "/v1/operator/raft/configuration",
                 "/v1/catalog/nodes", "/v1/health/service/web"):
        unknown = get(asked, path + "?dc=dc9")
        assert unknown.status_code >= 500 and "No path to datacenter" in unknown.text, (path, unknown.text)
    # py-consul's catalog.register(..., dc="dc2") puts the datacenter in the body, not the query.
    registration = {"Datacenter": "dc2", "Node": "routed-by-body", "Address": "127.0.9.9"}
    assert put(dc1.servers[0], "/v1/catalog/register", registration).status_code == 200
    wait_until(lambda: any(n["Node"] == "routed-by-body" for n in get(dc2.servers[0], "/v1/catalog/nodes?stale").json()),
               5, what="the body's datacenter to receive the node")
    assert all(n["Node"] != "routed-by-body" for n in get(dc1.servers[0], "/v1/catalog/nodes").json())
    assert put(dc1.servers[0], "/v1/catalog/register", {**registration, "Datacenter": "dc9"}).status_code >= 500
    deregister = S.put(dc1.servers[0].http + "/v1/catalog/deregister", json={"Datacenter": "dc2", "Node": "routed-by-body"},
                       timeout=15)
    assert deregister.status_code == 200, deregister.text


def test_step4_cross_dc_traffic_only_through_gateways(fed: list[FederatedDatacenter]) -> None:
    """operators.md #6356/#10796: no server-to-server socket crosses datacenters."""
    dc1, dc2 = fed
    for _ in range(5):
        assert get(dc2.servers[0], "/v1/internal/federation-states?dc=dc1").status_code == 200
    assert gateway_counter(dc2.gateway, "remote:dc1") > 0  # secondary -> its gateway -> the primary's
    assert gateway_counter(dc1.gateway, "local:any") > 0  # the primary's gateway -> a dc1 server
    servers = {dc.name: {s.address for s in dc.servers} for dc in fed}
    gateways = {dc.gateway.address for dc in fed}
    for dc in fed:
        other = servers["dc2" if dc.name == "dc1" else "dc1"]
        for server in dc.servers:
            assert server.process is not None
            peers = tcp_peers(server.process.pid)
            crossing = {p for p in peers if p[0] in other}
            assert not crossing, f"{server.node} holds connections to another DC's servers: {crossing}"
    peers_of_dc2 = set().union(*(tcp_peers(s.process.pid) for s in dc2.servers))  # type: ignore[union-attr]
    assert any(host in gateways for host, _ in peers_of_dc2), "no dc2 server holds a connection to a gateway"
    assert any(host in servers["dc2"] for host, _ in peers_of_dc2), "peer parsing sees no local connection at all"


# ---- step 6 ---------------------------------------------------------------------------------------


def test_step6_new_and_critical_gateways_reach_the_primary_debounced(fed: list[FederatedDatacenter]) -> None:
    """reference §6.2: anti-entropy pushes catalog changes upstream, at most once per 5 s."""
    dc1, dc2 = fed
    dc2_leader = leader_of(dc2)
    host = dc2.gateway.address.rsplit(".", 1)[0] + ".11"
    registration = mesh_gateway_registration("gw-extra", host, host, port=8443, wan_port=8443, datacenter="dc2")
    assert put(dc2_leader, "/v1/catalog/register", registration).status_code == 200
    wait_until(lambda: "gw-extra" in gateway_names(leader_of(dc1), "dc2"), 15, interval=0.2,
               what="dc1 sees dc2's second gateway")
    syncs_before = _metric(dc2_leader, 'meshfed_anti_entropy_syncs_total{outcome="synced"}')

    for _ in range(6):  # a flapping check must not drive a hot loop
        for status in ("critical", "passing"):
            registration["Check"]["Status"] = status
            put(dc2_leader, "/v1/catalog/register", registration)
            time.sleep(0.2)
    registration["Check"]["Status"] = "critical"
    put(dc2_leader, "/v1/catalog/register", registration)

    def extra_is_critical(server: ServerProcess) -> bool:
        body = get(server, "/v1/internal/federation-states/mesh-gateways?stale").json()
        extra = [g for g in body.get("dc2", []) if g["Node"]["Node"] == "gw-extra"]
        return bool(extra) and extra[0]["Checks"][0]["Status"] == "critical"

    wait_until(lambda: extra_is_critical(leader_of(dc1)), 15, interval=0.2, what="dc1 sees the critical check")
    syncs = _metric(dc2_leader, 'meshfed_anti_entropy_syncs_total{outcome="synced"}') - syncs_before
    assert syncs <= 4, f"{syncs} anti-entropy writes for one burst of flapping (debounce broken)"

    extra_address = f"{host}:8443"
    for dc in fed:  # locators and gateways of both DCs stop using the critical gateway
        wait_until(lambda d=dc: extra_address not in locator(d.servers[0])["LocalGateways"] + locator(d.servers[0])["PrimaryGateways"],
                   10, what="critical gateway dropped by the locator")
    routes = S.get(dc1.gateway.admin + "/v1/gateway/routes", timeout=5).json()["RemoteGateways"]
    wait_until(lambda: extra_address not in S.get(dc1.gateway.admin + "/v1/gateway/routes", timeout=5).json()["RemoteGateways"]["dc2"],
               10, what="dc1's gateway stops routing to the critical dc2 gateway")
    assert routes is not None
    assert put(dc2_leader, "/v1/catalog/deregister", {"Node": "gw-extra"}).status_code == 200
    wait_until(lambda: "gw-extra" not in gateway_names(leader_of(dc1), "dc2"), 15, what="extra gateway gone")


def _metric(server: ServerProcess, sample: str) -> float:
    for line in get(server, "/v1/agent/metrics?format=prometheus").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _apply_state(dc1: FederatedDatacenter, state: FederationState) -> None:
    """A federation-state write over mTLS gRPC, as a secondary's anti-entropy sends it."""
    tls = f"{dc1.root}/tls"  # type: ignore[attr-defined]

    async def call() -> None:
        pool = ConnectionPool(load_channel_credentials(f"{tls}/consul-agent-ca.pem", f"{tls}/dc1-server-consul-0.pem",
                                                       f"{tls}/dc1-server-consul-0-key.pem"))
        try:
            _, reply = await pool.call(leader_of(dc1).rpc_address, "FederationState/Apply",
                                       RequestHeader(request_id=uuid.uuid4().hex), {"op": "upsert", "state": to_wire(state)},
                                       timeout=10, server_name="server.dc1.consul")
            assert reply is True
        finally:
            await pool.close()

    asyncio.run(call())


def test_an_update_and_a_deletion_replicate_as_deltas(fed: list[FederatedDatacenter]) -> None:
    """Issue #13: once in sync, dc2 long-polls FederationState/ListSince and gets only what changed;
    the primary answers no full List meanwhile."""
    dc1, dc2 = fed

    def served(op: str) -> float:
        return sum(_metric(s, f"consul_federation_state_{op}_count") for s in dc1.servers)

    def ghost(server: ServerProcess) -> str | None:
        answer = get(server, "/v1/internal/federation-state/dc-ghost?stale")
        return answer.json()["State"]["UpdatedAt"] if answer.status_code == 200 else None

    lists, deltas = served("list"), served("list_since")
    for marker in ("2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"):  # a new record, then an update of it
        _apply_state(dc1, FederationState("dc-ghost", updated_at=marker))
        wait_until(lambda marker=marker: all(ghost(s) == marker for s in dc2.servers), 15, interval=0.2,
                   what=f"dc-ghost at {marker} in dc2")
    assert S.delete(leader_of(dc1).http + "/v1/internal/federation-state/dc-ghost", timeout=15).status_code == 200
    wait_until(lambda: all(ghost(s) is None for s in dc2.servers), 15, interval=0.2, what="the deletion in dc2")
    assert served("list_since") >= deltas + 3
    assert served("list") == lists, "the secondary fell back to full Lists"


def test_gateways_learn_a_new_dc_and_forget_a_deleted_one_through_deltas(fed: list[FederatedDatacenter]) -> None:
    """Issue #13: after its first full read, a mesh gateway follows `?changes-since=` deltas of the
    gateway list: dc1's gateway learns a new DC's gateway and forgets the deleted DC while its
    servers serve no full list (with full reads, each change is one more)."""
    dc1, dc2 = fed
    ghost_gateway = CheckServiceNode(
        node=Node(node="ghost-gw", address="192.0.2.7"),
        service=NodeService(id="mesh-gateway", service="mesh-gateway", kind=KIND_MESH_GATEWAY, address="192.0.2.7",
                            port=8443, meta={"consul-wan-federation": "1"}))

    def routes(gateway: GatewayProcess) -> dict[str, list[str]]:
        return S.get(gateway.admin + "/v1/gateway/routes", timeout=5).json()["RemoteGateways"]

    def full_lists() -> float:
        return sum(_metric(s, "consul_federation_state_list_mesh_gateways_count") for s in dc1.servers)

    before = full_lists()
    _apply_state(dc1, FederationState("dc-far", (ghost_gateway,)))
    for gateway in (dc1.gateway, dc2.gateway):
        wait_until(lambda g=gateway: routes(g).get("dc-far") == ["192.0.2.7:8443"], 15, interval=0.2,
                   what=f"{gateway.datacenter}'s gateway routes dc-far")
    assert routes(dc1.gateway)["dc2"], "the delta dropped the DCs it did not name"
    assert S.delete(leader_of(dc1).http + "/v1/internal/federation-state/dc-far", timeout=15).status_code == 200
    for gateway in (dc1.gateway, dc2.gateway):
        wait_until(lambda g=gateway: "dc-far" not in routes(g), 15, interval=0.2,
                   what=f"{gateway.datacenter}'s gateway forgets dc-far")
    assert full_lists() == before, "dc1's gateway re-read the full list instead of following deltas"


# ---- step 5 ---------------------------------------------------------------------------------------


def test_step5_local_gateway_loss_falls_back_to_the_primary_and_returns(fed: list[FederatedDatacenter]) -> None:
    """reference §7.4: after 3 consecutive replication failures the leader dials the primary's
    gateways directly (replicated list ∪ primary_gateways), and goes back when local ones return."""
    dc1, dc2 = fed
    dc2.gateway.stop()
    wait_until(lambda: get(dc2.servers[1], "/v1/internal/federation-states?stale").status_code == 200, 5,
               what="stale reads in dc2 without its gateway")
    wait_until(lambda: locator(leader_of(dc2))["Mode"] == "direct", 40, interval=0.5,
               what="dc2's leader dials dc1's gateways directly")
    view = locator(leader_of(dc2))
    assert dc1.gateway.bind in view["PrimaryGateways"] + view["FallbackGateways"]
    wait_until(lambda: get(leader_of(dc2), "/v1/internal/federation-states?dc=dc1").status_code == 200, 20,
               what="cross-DC query in direct mode")
    assert get(dc2.servers[1], "/v1/internal/federation-states?stale").status_code == 200

    dc2.gateway.start()
    wait_until(lambda: locator(leader_of(dc2))["Mode"] == "local", 40, interval=0.5,
               what="dc2's leader back on its local gateway")
    wait_until(lambda: replication(leader_of(dc2))["ConsecutiveFailures"] == 0, 30, what="replication healthy")


def test_step5_primary_gateways_replaced_one_at_a_time_heal_without_restart(fed: list[FederatedDatacenter]) -> None:
    """operators.md #7339/#15032: new primary gateways reach secondaries through the old ones."""
    dc1, dc2 = fed
    old = dc1.gateway
    base = old.address.rsplit(".", 1)[0]
    replacement = GatewayProcess("dc1", f"{base}.12", old.http_addrs, old.log_path.replace(".log", "-2.log"),
                                 node="gw-dc1-replacement")
    fed[0].extra_gateways.append(replacement)  # type: ignore[attr-defined]
    replacement.start()
    wait_until(lambda: replacement.bind in locator(leader_of(dc2))["PrimaryGateways"], 30, interval=0.3,
               what="dc2 learns the new primary gateway")
    old.stop()
    wait_until(lambda: old.bind not in locator(leader_of(dc2))["PrimaryGateways"], 40, interval=0.3,
               what="dc2 forgets the old primary gateway")
    wait_until(lambda: get(dc2.servers[0], "/v1/internal/federation-states?dc=dc1").status_code == 200, 30,
               what="cross-DC query through the new primary gateway")
    assert gateway_counter(replacement, "local:any") > 0
    fed[0].gateway = replacement


# ---- step 7 ---------------------------------------------------------------------------------------


def test_step7_new_secondary_leader_resumes_without_rewriting(fed: list[FederatedDatacenter]) -> None:
    """#9196: an election must not rewrite unchanged replicated records."""
    dc1, dc2 = fed
    index_before = int(get(dc2.servers[0], "/v1/internal/federation-states?stale").headers["X-Consul-Index"])
    old_leader = leader_of(dc2)
    old_leader.kill()
    wait_until(lambda: leader_of(dc2) is not old_leader, 10, what="a new dc2 leader")
    new_leader = leader_of(dc2)
    wait_until(lambda: replication(new_leader)["Rounds"] >= 1, 30, interval=0.3, what="replication resumed")
    status = replication(new_leader)
    assert status["Applies"] == 0, f"the new leader rewrote {status['Applies']} unchanged federation states"
    index_after = int(get(new_leader, "/v1/internal/federation-states?stale").headers["X-Consul-Index"])
    assert index_after == index_before

    # ... and it is really following: a change in the primary arrives (one apply, not a rewrite).
    host = dc1.gateway.address.rsplit(".", 1)[0] + ".13"
    put(leader_of(dc1), "/v1/catalog/register", mesh_gateway_registration("gw-probe", host, host, datacenter="dc1"))
    wait_until(lambda: "gw-probe" in gateway_names(new_leader, "dc1"), 20, interval=0.3, what="dc1 change replicated")
    assert replication(new_leader)["Applies"] == 1
    put(leader_of(dc1), "/v1/catalog/deregister", {"Node": "gw-probe"})
    old_leader.start()
    wait_for_leader(dc2.servers, timeout=30)


def test_step7_primary_restart_secondary_keeps_serving_and_replication_resumes(fed: list[FederatedDatacenter]) -> None:
    dc1, dc2 = fed
    for server in dc1.servers:
        server.stop()
    try:
        time.sleep(1.0)
        assert get(dc2.servers[0], "/v1/internal/federation-states?stale").status_code == 200
        wait_until(lambda: replication(leader_of(dc2))["ConsecutiveFailures"] >= 1, 20, what="replication notices")
    finally:
        for server in dc1.servers:
            server.start()
    wait_for_leader(dc1.servers, timeout=30)
    wait_until(lambda: replication(leader_of(dc2))["ConsecutiveFailures"] == 0, 60, interval=0.5,
               what="replication resumes by itself")
    assert get(dc2.servers[1], "/v1/internal/federation-states?dc=dc1").status_code == 200

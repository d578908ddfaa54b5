"""ACL enforcement on a real 3-server datacenter with `default_policy = "deny"` (issue #9).

Pins reference/acl.md summary 8 (Consul's 403 texts) and §5 (operator:write for the CA
configuration and federation-state delete, node/service write for catalog registration), through
the leader and through a follower; and that a follower's forwarded write is re-checked by the
leader with the caller's token (a bare RPC to the leader without a token is refused).
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from meshfed.fsm.records import (
    KIND_MESH_GATEWAY,
    CheckServiceNode,
    FederationState,
    Node,
    NodeService,
    to_wire,
)
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader

from .harness import Datacenter, ServerProcess, wait_until

MANAGEMENT = "3d6b1c2e-8f41-4c2a-9a6e-5b7d0e1f2a34"
ANONYMOUS_DENIAL = ("Permission denied: anonymous token lacks permission '{}'{}. The anonymous token is used "
                    "implicitly when a request does not specify a token.")
CA_CONFIG = {"Provider": "consul", "Config": {"LeafCertTTL": "72h"}}
REGISTRATION = {"Node": "web-node", "Address": "127.0.55.1", "Service": {"Service": "web", "Port": 80}}


@pytest.fixture(scope="module")
def acl_dc(tmp_path_factory: pytest.TempPathFactory) -> Datacenter:  # type: ignore[misc]
    from .conftest import next_block

    dc = Datacenter("dc1", f"127.0.{next_block()}", str(tmp_path_factory.mktemp("acl")), config={
        "connect": {"enabled": True},
        "acl": {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": MANAGEMENT}},
    })
    # Not dc.start(): its readiness check lists /v1/agent/members without a token, which a deny
    # default filters to nothing (as Consul's does); wait with the management token instead.
    for server in dc.servers:
        server.start()
    wait_until(lambda: _ready(dc), timeout=30, what="an agreed leader with every server published")
    try:
        yield dc
    finally:
        dc.stop()


def _ready(dc: Datacenter) -> bool:
    try:
        leaders = {dc.get(server, "/v1/status/leader", timeout=2).json() for server in dc.servers}
        members = dc.get(dc.servers[0], "/v1/agent/members", headers={"X-Consul-Token": MANAGEMENT}, timeout=2)
    except (OSError, ValueError):
        return False
    alive = sum(1 for member in members.json() if member["Status"] == 1)
    return len(leaders) == 1 and "" not in leaders and alive == len(dc.servers)


def rpc(server: ServerProcess, method: str, body: object, token: str = "") -> object:
    """One call to `server`'s RPC port, as any process that reaches it could make."""

    async def call() -> object:
        pool = ConnectionPool()
        try:
            header = RequestHeader(token=token, request_id=uuid.uuid4().hex)
            return (await pool.call(server.rpc_address, method, header, body, timeout=10))[1]
        finally:
            await pool.close()

    return asyncio.run(call())


def _doors(dc: Datacenter) -> list[tuple[str, ServerProcess]]:
    return [("leader", dc.leader()), ("follower", dc.followers()[0])]


@pytest.mark.parametrize("door", ["leader", "follower"])
def test_writes_without_a_token_get_consuls_403(acl_dc: Datacenter, door: str) -> None:
    server = dict(_doors(acl_dc))[door]
    ca = acl_dc.put(server, "/v1/connect/ca/configuration", CA_CONFIG)
    assert (ca.status_code, ca.text) == (403, ANONYMOUS_DENIAL.format("operator:write", ""))
    assert ca.headers["X-Consul-Index"]
    delete = acl_dc.session.delete(server.http + "/v1/internal/federation-state/dc1", timeout=10)
    assert (delete.status_code, delete.text) == (403, ANONYMOUS_DENIAL.format("operator:write", ""))
    register = acl_dc.put(server, "/v1/catalog/register", REGISTRATION)
    assert (register.status_code, register.text) == (403, ANONYMOUS_DENIAL.format("node:write", ' on "web-node"'))


def test_an_unknown_token_is_acl_not_found(acl_dc: Datacenter) -> None:
    response = acl_dc.put(acl_dc.followers()[0], "/v1/catalog/register", REGISTRATION,
                          headers={"X-Consul-Token": str(uuid.uuid4())})
    assert (response.status_code, response.text) == (403, "ACL not found")


@pytest.mark.parametrize("door", ["leader", "follower"])
def test_the_management_token_may_do_everything(acl_dc: Datacenter, door: str) -> None:
    server = dict(_doors(acl_dc))[door]
    headers = {"X-Consul-Token": MANAGEMENT}
    assert acl_dc.put(server, "/v1/connect/ca/configuration", CA_CONFIG, headers=headers).status_code == 200
    registration = {**REGISTRATION, "Node": f"web-{door}"}
    assert acl_dc.put(server, "/v1/catalog/register", registration, headers=headers).json() is True
    assert acl_dc.put(server, f"/v1/catalog/register?token={MANAGEMENT}", registration).json() is True
    bearer = {"Authorization": f"Bearer {MANAGEMENT}"}
    delete = acl_dc.session.delete(server.http + "/v1/internal/federation-state/dc1", headers=bearer, timeout=10)
    assert delete.status_code == 200
    nodes = acl_dc.get(server, "/v1/catalog/nodes", headers=headers)
    assert f"web-{door}" in {row["Node"] for row in nodes.json()}
    assert "X-Consul-Results-Filtered-By-ACLs" not in nodes.headers


def test_list_reads_without_a_token_are_filtered_not_refused(acl_dc: Datacenter) -> None:
    acl_dc.put(acl_dc.leader(), "/v1/catalog/register", REGISTRATION, headers={"X-Consul-Token": MANAGEMENT})
    response = acl_dc.get(acl_dc.followers()[0], "/v1/catalog/services")
    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert acl_dc.get(acl_dc.followers()[0], "/v1/status/leader").status_code == 200


def test_the_leader_checks_a_forwarded_write_with_the_callers_token(acl_dc: Datacenter) -> None:
    """The leader's RPC door: without the caller's token a write is refused, with it accepted."""
    leader = acl_dc.leader()
    body = {"node": to_wire(Node(node="rpc-node", address="127.0.55.2")),
            "service": to_wire(NodeService(id="api", service="api")), "checks": []}

    with pytest.raises(RPCError) as refused:
        rpc(leader, "Catalog/Register", body)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.message == ANONYMOUS_DENIAL.format("node:write", ' on "rpc-node"')
    assert rpc(leader, "Catalog/Register", body, MANAGEMENT) is True


def test_rpc_reads_without_a_token_reveal_nothing_a_denied_http_read_would_not(acl_dc: Datacenter) -> None:
    """The RPC port answers more than servers (anyone who can reach it, without TLS client
    verification). Its reads check the caller's token as HTTP's do: no token, no ACL objects
    (and never a secret), and catalog, health and config-entry reads filtered to nothing."""
    leader = acl_dc.leader()
    made = acl_dc.put(leader, "/v1/catalog/register", REGISTRATION, headers={"X-Consul-Token": MANAGEMENT})
    assert made.status_code == 200, made.text

    management = rpc(leader, "ACL/TokenList", {}, MANAGEMENT)
    assert isinstance(management, list) and management  # the management token may list them
    accessor = management[0]["AccessorID"]
    for method, body in (("ACL/TokenList", {}), ("ACL/TokenRead", {"accessor": accessor}),
                         ("ACL/PolicyList", {}), ("ACL/RoleList", {})):
        with pytest.raises(RPCError) as refused:
            rpc(leader, method, body)
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED, method
    assert rpc(leader, "Catalog/ListServices", {}) in ({}, [])
    assert rpc(leader, "Catalog/ListNodes", {}) == []
    assert rpc(leader, "Health/ServiceNodes", {"service": "web"}) == []
    assert rpc(leader, "Catalog/ListServices", {}, MANAGEMENT)

    as_manager = {"X-Consul-Token": MANAGEMENT}
    entry = acl_dc.put(leader, "/v1/config", {"Kind": "service-defaults", "Name": "web", "Protocol": "http"},
                       headers=as_manager)
    assert entry.status_code == 200, entry.text
    allowed = acl_dc.put(leader, "/v1/connect/intentions/exact?source=api&destination=web", {"Action": "allow"},
                         headers=as_manager)
    assert allowed.status_code == 200, allowed.text
    assert rpc(leader, "ConfigEntry/List", {"kind": "service-defaults"}) == []
    assert rpc(leader, "ConfigEntry/Get", {"kind": "service-defaults", "name": "web"}) == {"entry": None}
    assert rpc(leader, "Intention/List", {}) == []
    assert len(rpc(leader, "ConfigEntry/List", {"kind": "service-defaults"}, MANAGEMENT)) == 1
    assert len(rpc(leader, "Intention/List", {}, MANAGEMENT)) == 1
    with pytest.raises(RPCError) as refused:
        rpc(leader, "Peering/List", {})
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_rpc_federation_and_replication_reads_check_the_callers_token(acl_dc: Datacenter) -> None:
    """What replication and the gateways read over RPC, as Consul guards it (reference/acl.md §5,
    federation.md §3): FederationState Get/List need operator:read, ListMeshGateways and
    ConfigEntry/ListAll answer only the rows the token may read."""
    leader = acl_dc.leader()
    gateway = CheckServiceNode(
        node=Node(node="gw-1", address="127.0.55.9"),
        service=NodeService(id="mesh-gateway", service="mesh-gateway", kind=KIND_MESH_GATEWAY, address="127.0.55.9",
                            port=8443, meta={"consul-wan-federation": "1"}))

    state = to_wire(FederationState(datacenter="dc-far", mesh_gateways=(gateway,)))
    assert rpc(leader, "FederationState/Apply", {"op": "upsert", "state": state}, MANAGEMENT) is True
    entry = acl_dc.put(leader, "/v1/config", {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
                       headers={"X-Consul-Token": MANAGEMENT})
    assert entry.status_code == 200, entry.text

    for method, body in (("FederationState/List", {}), ("FederationState/Get", {"datacenter": "dc-far"})):
        with pytest.raises(RPCError) as refused:
            rpc(leader, method, body)
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED, method
        assert refused.value.message == ANONYMOUS_DENIAL.format("operator:read", ""), method
    assert rpc(leader, "FederationState/Get", {"datacenter": "dc-far"}, MANAGEMENT)["state"]  # type: ignore[index]
    assert rpc(leader, "FederationState/ListMeshGateways", {}) in ({}, {"dc-far": []})
    assert rpc(leader, "FederationState/ListMeshGateways", {}, MANAGEMENT)["dc-far"]  # type: ignore[index]
    assert rpc(leader, "ConfigEntry/ListAll", {}) == []
    assert any(e["Name"] == "api" for e in rpc(leader, "ConfigEntry/ListAll", {}, MANAGEMENT))  # type: ignore[union-attr]


def test_rpc_acl_writes_and_operator_reads_need_the_callers_token(acl_dc: Datacenter) -> None:
    """Found by a probe of every RPC method with no token: ACL/PolicySet and ACL/TokenSet answered
    it, so whoever reached the RPC port could mint a global-management token. Every method the
    RPC port serves now declares what it needs (or why it needs nothing), and an undeclared one is
    refused."""
    leader = acl_dc.leader()

    evil_policy = {"policy": {"Name": "evil", "Rules": 'acl = "write"'}}
    evil_token = {"token": {"Description": "evil", "Policies": [{"Name": "global-management"}]}}
    refused = [
        ("ACL/PolicySet", evil_policy, "acl:write"),
        ("ACL/TokenSet", evil_token, "acl:write"),
        ("ACL/TokenDelete", {"accessor": str(uuid.uuid4())}, "acl:write"),
        ("Operator/AutopilotGetConfiguration", {}, "operator:read"),
        ("Federation/Check", {}, "operator:read"),
        ("Intention/Check", {"source": "api", "destination": "web"}, "intention:read"),
        ("Intention/Match", {"by": "destination", "names": ["web"]}, "intention:read"),
        ("Catalog/GatewayServices", {"gateway": "ingress"}, "service:read"),
    ]
    for method, body, permission in refused:
        with pytest.raises(RPCError) as denied:
            rpc(leader, method, body)
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED, method
        assert f"'{permission}'" in denied.value.message, (method, denied.value.message)
    policies = rpc(leader, "ACL/PolicyList", {}, MANAGEMENT)
    assert "evil" not in {p["Name"] for p in policies}  # type: ignore[union-attr]
    made = rpc(leader, "ACL/PolicySet", {"policy": {"Name": "ops-read", "Rules": 'operator = "read"'}},
                            MANAGEMENT)
    assert made["Name"] == "ops-read"  # type: ignore[index]
    assert rpc(leader, "Operator/AutopilotGetConfiguration", {}, MANAGEMENT)
    assert rpc(leader, "Status/Leader", {}) == leader.rpc_address  # status stays open, as Consul's

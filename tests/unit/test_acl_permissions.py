"""The per-route permission table and the HTTP middleware that enforces it (reference/acl.md §5,
summary 8-9), driven through `build_app` with endpoints on the twins; and the RPC method table."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer

from meshfed.fsm.acl import Access
from meshfed.fsm.acl.records import ACLLink as Link
from meshfed.fsm.acl.records import ACLPolicy as Policy
from meshfed.fsm.acl.records import ACLToken as Token
from meshfed.fsm.acl.records import ServiceIdentity
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.acl.needs import Need, config_entry_read, config_entry_write, registration
from meshfed.server.acl.permissions import EXEMPT, ROUTES, declaration_of
from meshfed.server.acl.resolver import ACLResolver
from meshfed.server.acl.rpc_permissions import RPC_METHODS, RPCAuthorizer
from meshfed.server.acl.token import ANONYMOUS_SECRET, effective_token
from meshfed.server.config.settings import ACLConfig, ACLTokens
from meshfed.server.http.acl_middleware import FILTERED_HEADER, acl_middleware
from meshfed.server.http.api import Api
from meshfed.server.http.app import build_app
from tests.unit.test_acl_resolver import FakeACLStore
from tests.unit.test_http_routes_internal import make_api

MANAGEMENT = "mgmt-secret"
ANONYMOUS_CA_DENIAL = ("Permission denied: anonymous token lacks permission 'operator:write'. The anonymous token "
                       "is used implicitly when a request does not specify a token.")


def acl_api(default_policy: str = "deny", default_token: str = "") -> Api:
    api = make_api("dc1")
    acl = ACLConfig(enabled=True, default_policy=default_policy,
                    tokens=ACLTokens(initial_management=MANAGEMENT, default=default_token))
    api.wan.config = dataclasses.replace(api.wan.config, acl=acl)  # type: ignore[misc]
    return api


def served(api: Api, scenario: Callable[[TestClient], Awaitable[None]], store: FakeACLStore | None = None) -> None:
    async def run() -> None:
        if store is None:
            app = build_app(api)
        else:  # ACL tables come from the fake: install the middleware with a resolver over it
            config = api.wan.config
            api.wan.config = dataclasses.replace(config, acl=dataclasses.replace(config.acl, enabled=False))  # type: ignore[misc]
            app = build_app(api)
            app.middlewares.append(acl_middleware(api, ACLResolver(store, config.acl, "dc1")))
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(run())


def test_every_route_declares_its_permission_or_is_exempt() -> None:
    api = acl_api()
    registered = {(route.method, route.resource.canonical) for route in build_app(api).router.routes()
                  if route.resource is not None and route.method != "HEAD"}
    undeclared = sorted(key for key in registered if declaration_of(*key) is None)
    assert undeclared == [], f"routes without an ACL declaration: {undeclared}"
    stale = sorted((set(ROUTES) | set(EXEMPT)) - registered)
    assert stale == [], f"declarations for routes that do not exist: {stale}"
    assert not set(ROUTES) & set(EXEMPT)


def test_exemptions_stay_few_and_explained() -> None:
    assert len(EXEMPT) <= 6  # each public by design, with its reason
    assert all(reason for reason in EXEMPT.values())


def test_token_precedence_ends_in_default_then_anonymous() -> None:
    assert effective_token("sent", "default") == "sent"
    assert effective_token("", "default") == "default"
    assert effective_token("", "") == ANONYMOUS_SECRET


def test_config_entry_needs_per_kind() -> None:
    assert config_entry_read("proxy-defaults", "global") == []
    assert config_entry_write("proxy-defaults", "global") == [Need("mesh", Access.WRITE)]
    assert config_entry_write("service-defaults", "web") == [Need("service", Access.WRITE, "web")]
    assert config_entry_write("service-intentions", "web") == [Need("intention", Access.WRITE, "web")]
    assert config_entry_read("exported-services", "default") == [Need("mesh", Access.READ)]


def test_registration_asks_node_write_only_when_the_node_changes() -> None:
    from meshfed.fsm.records import Node, NodeService

    node = Node(node="n1", address="10.0.0.1")
    service = NodeService(id="p", service="web-proxy", kind="connect-proxy", proxy={"DestinationServiceName": "web"})
    assert registration(node, node, service, ()) == [
        Need("service", Access.WRITE, "web-proxy"), Need("service", Access.WRITE, "web")]
    moved = dataclasses.replace(node, address="10.0.0.2")
    assert registration(node, moved, None, ())[0] == Need("node", Access.WRITE, "n1")


def test_without_a_token_writes_get_consuls_403_and_status_stays_open() -> None:
    async def scenario(client: TestClient) -> None:
        refused = await client.put("/v1/connect/ca/configuration", json={"Provider": "consul"})
        assert (refused.status, await refused.text()) == (403, ANONYMOUS_CA_DENIAL)
        assert refused.headers["X-Consul-Index"]
        assert (await client.get("/v1/status/leader")).status == 200
        assert (await client.get("/v1/connect/ca/roots")).status != 403

    served(acl_api(), scenario)


def test_unknown_token_is_acl_not_found() -> None:
    async def scenario(client: TestClient) -> None:
        response = await client.get("/v1/operator/raft/configuration", headers={"X-Consul-Token": "nope"})
        assert (response.status, await response.text()) == (403, "ACL not found")

    served(acl_api(), scenario)


def test_management_token_passes_and_the_default_token_is_used_when_none_is_sent() -> None:
    async def scenario(client: TestClient) -> None:
        assert (await client.get("/v1/operator/raft/configuration", params={"token": MANAGEMENT})).status == 200
        assert (await client.get("/v1/operator/raft/configuration")).status == 200

    served(acl_api(default_token=MANAGEMENT), scenario)


def test_catalog_lists_are_filtered_with_the_header() -> None:
    store = FakeACLStore()
    store.put(Policy("p-1", "web-read", rules='service "web" { policy = "read" } node_prefix "" { policy = "read" }'))
    store.put(Token("a-1", "s-web", policies=(Link("p-1"),)))
    store.put(Token("a-2", "s-sid", service_identities=(ServiceIdentity("web"),)))

    async def scenario(client: TestClient) -> None:
        manage = {"X-Consul-Token": MANAGEMENT}
        for service in ("web", "db"):
            body = {"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": service}}
            assert (await client.put("/v1/catalog/register", json=body, headers=manage)).status == 200
        reader = {"X-Consul-Token": "s-web"}
        services = await client.get("/v1/catalog/services", headers=reader)
        assert await services.json() == {"web": []}
        assert services.headers[FILTERED_HEADER] == "true"
        everything = await client.get("/v1/catalog/services", headers=manage)
        assert set(await everything.json()) == {"web", "db"} and FILTERED_HEADER not in everything.headers
        health = await client.get("/v1/health/service/db", headers=reader)
        assert await health.json() == [] and health.headers[FILTERED_HEADER] == "true"
        # §9 case 23 and 30: read is not write; a service identity writes its service and sidecar only.
        denied = await client.put("/v1/catalog/register", headers=reader,
                                  json={"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "web"}})
        assert (denied.status, await denied.text()) == (
            403, "Permission denied: token with AccessorID 'a-1' lacks permission 'service:write' on \"web\"")
        identity = {"X-Consul-Token": "s-sid"}
        for service, status in (("web-sidecar-proxy", 200), ("api", 403)):
            body = {"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": service}}
            assert (await client.put("/v1/catalog/register", json=body, headers=identity)).status == status

    served(acl_api(), scenario, store)


def test_rpc_writes_are_checked_with_the_header_token() -> None:
    api = acl_api()
    store = FakeACLStore()
    store.put(Policy("p-op", "operator", rules='operator = "write"'))
    store.put(Token("a-op", "s-op", policies=(Link("p-op"),)))
    check = RPCAuthorizer(ACLResolver(store, api.wan.config.acl, "dc1"), api.state)
    with pytest.raises(RPCError) as caught:
        check("FederationState/Apply", RequestHeader(), {"op": "delete", "state": {"datacenter": "dc2"}})
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    check("FederationState/Apply", RequestHeader(token="s-op"), {"op": "delete", "state": {"datacenter": "dc2"}})
    check("Catalog/ListNodes", RequestHeader(), {})  # reads are not in the table
    with pytest.raises(RPCError, match="lacks permission 'node:write' on \"n9\""):
        check("Catalog/Register", RequestHeader(token="s-op"), {"node": {"node": "n9", "address": "1.2.3.4"}})
    assert {"Catalog/Register", "ConnectCA/SetConfiguration", "Intention/Apply", "ConfigEntry/Apply"} <= set(RPC_METHODS)


def test_rpc_reads_of_acl_state_need_acl_read_even_when_called_directly() -> None:
    """A caller holding only a CA-signed client certificate must not read tokens over the gRPC port
    by skipping the HTTP door (issue #9 item 4)."""
    api = acl_api()
    store = FakeACLStore()
    store.put(Policy("p-read", "reader", rules='acl = "read"'))
    store.put(Token("a-read", "s-read", policies=(Link("p-read"),)))
    check = RPCAuthorizer(ACLResolver(store, api.wan.config.acl, "dc1"), api.state)
    for method in ("ACL/TokenRead", "ACL/TokenList", "ACL/PolicyRead", "ACL/PolicyList", "ACL/RoleRead",
                   "ACL/RoleList", "ConnectCA/GetConfiguration"):
        with pytest.raises(RPCError) as caught:
            check(method, RequestHeader(), {})
        assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED, method
    check("ACL/TokenRead", RequestHeader(token="s-read"), {"accessor_id": "a-read"})


def test_list_since_needs_operator_read_but_its_index_only_barrier_needs_nothing() -> None:
    from meshfed.server.acl.needs import Access, Need
    needs_of = RPC_METHODS["FederationState/ListSince"]
    assert needs_of(None, {"since": 3}) == [Need("operator", Access.READ)]  # type: ignore[arg-type]
    assert needs_of(None, {"since": 3, "index_only": True}) == []  # type: ignore[arg-type]

"""The mesh gateway's delta read of other DCs' gateways (issue #13 goal 1): the merge (pure), the
follow loop's full-then-delta reads, the endpoint and the route's answer shapes, and ACL filtering
of the delta exactly as of the full list."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer

from meshfed.fsm.acl import Authorizer, DefaultPolicy, parse_rules
from meshfed.fsm.records import FederationState
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.acl.filters import mesh_gateways_by_datacenter
from meshfed.server.acl.resolver import Identity
from meshfed.server.dataplane import server_api
from meshfed.server.dataplane.gateway import Gateway, GatewayConfig
from meshfed.server.dataplane.remote_gateways import is_delta, merge_gateway_delta
from meshfed.server.http.app import build_app
from tests.unit.test_endpoint_federation_state import DC as EndpointDC
from tests.unit.test_endpoint_federation_state import gateway, primary_follower, put_state
from tests.unit.test_gateway_acl import ScriptedAPI
from tests.unit.test_http_routes_internal import make_api

WANFED = {"consul-wan-federation": "1"}


def csn(address: str, node: str = "g", status: str = "passing") -> dict[str, Any]:
    return {"Node": {"Node": node, "Address": "10.9.9.9"},
            "Service": {"Service": "mesh-gateway", "Address": "10.9.9.9", "Port": 8443, "Meta": WANFED,
                        "TaggedAddresses": {"wan": {"Address": address, "Port": 443}}},
            "Checks": [{"Status": status}]}


# ---- the merge -----------------------------------------------------------------------------------

KNOWN = {"dc2": [("2.2.2.2", 443)], "dc3": [("3.3.3.3", 443)], "dc4": [("4.4.4.4", 443)]}


def test_a_delta_adds_changes_drops_and_deletes_only_what_it_names() -> None:
    delta = {"Resync": False,
             "Changed": {"DC5": [csn("5.5.5.5")], "dc2": [csn("2.2.2.2"), csn("2.2.2.3", "h")],
                         "dc3": [], "dc4": [csn("4.4.4.4", status="critical")], "dc1": [csn("1.1.1.1")]},
             "Deleted": ["dc9", "DC6"]}
    merged, touched = merge_gateway_delta({**KNOWN, "dc6": [("6.6.6.6", 443)], "dc7": [("7.7.7.7", 443)]},
                                          delta, "dc1")
    assert merged == {"dc2": [("2.2.2.2", 443), ("2.2.2.3", 443)], "dc5": [("5.5.5.5", 443)],
                      "dc7": [("7.7.7.7", 443)]}
    assert touched == {"dc2", "dc3", "dc4", "dc5", "dc6", "dc9"}  # never our own DC


def test_an_empty_delta_changes_nothing_and_the_known_table_is_not_mutated() -> None:
    known = {dc: list(a) for dc, a in KNOWN.items()}
    merged, touched = merge_gateway_delta(known, {"Resync": False, "Changed": {}, "Deleted": []}, "dc1")
    assert merged == KNOWN and touched == set() and merged is not known
    merge_gateway_delta(known, {"Resync": False, "Changed": {"dc2": []}, "Deleted": ["dc3"]}, "dc1")
    assert known == KNOWN


@pytest.mark.parametrize("delta", [
    {"Resync": True},
    {"Resync": False, "Changed": ["dc2"], "Deleted": []},
    {"Resync": False, "Changed": {}, "Deleted": "dc2"},
    {"Resync": False, "Changed": {}, "Deleted": [7]},
    {"Resync": False, "Changed": {"dc2": [7]}, "Deleted": []},
])
def test_a_resync_marker_or_a_malformed_delta_raises_value_error(delta: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        merge_gateway_delta(KNOWN, delta, "dc1")


def test_the_two_shapes_are_told_apart_by_resync_being_a_boolean() -> None:
    assert is_delta({"Resync": False, "Changed": {}}) and is_delta({"Resync": True})
    assert not is_delta({"Resync": [csn("1.1.1.1")]}) and not is_delta({"dc2": []}) and not is_delta(None)


def test_the_gateway_merges_deltas_logs_what_changed_and_asks_for_a_full_read_on_resync(
        caplog: pytest.LogCaptureFixture) -> None:
    gw = Gateway(GatewayConfig("dc1", "gw1", ("127.0.0.1", 0), ("127.0.0.1", 0), ("127.0.0.1:1",)))
    caplog.set_level(logging.INFO, "meshfed.gateway")
    assert gw._set_gateways({"dc2": [csn("2.2.2.2")], "dc3": [csn("3.3.3.3")]}) is True
    assert gw._set_gateways({"Resync": False, "Changed": {"dc4": [csn("4.4.4.4")]}, "Deleted": ["dc3"]}) is True
    assert dict(gw.table.remote_gateways) == {"dc2": [("2.2.2.2", 443)], "dc4": [("4.4.4.4", 443)]}
    assert caplog.messages[-1] == "remote gateways (2 datacenters): -dc3; +dc4=1"
    assert gw._set_gateways({"Resync": True}) is False
    assert gw._set_gateways({"Resync": False, "Changed": "junk"}) is False
    assert dict(gw.table.remote_gateways) == {"dc2": [("2.2.2.2", 443)], "dc4": [("4.4.4.4", 443)]}  # kept
    assert gw._set_gateways({"dc2": [csn("2.2.2.2")]}) is True  # a full read replaces the table
    assert dict(gw.table.remote_gateways) == {"dc2": [("2.2.2.2", 443)]}
    assert caplog.messages[-1] == "remote gateways (1 datacenters): -dc4"


# ---- the follow loop -----------------------------------------------------------------------------

def test_follow_reads_in_full_first_then_deltas_and_in_full_again_after_resync_or_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Any] = [
        ({"X-Consul-Index": "5"}, {"dc2": []}),
        ({"X-Consul-Index": "6"}, {"Resync": False, "Changed": {}, "Deleted": []}),
        ({"X-Consul-Index": "9"}, {"Resync": True}),
        ({"X-Consul-Index": "9"}, {"dc2": []}),
        RuntimeError("boom"),
        ({"X-Consul-Index": "10"}, {"dc2": []}),
    ]
    api = ScriptedAPI(answers, monkeypatch)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(server_api.follow(api, "/v1/x?stale", "routes", lambda body: not body.get("Resync"),  # type: ignore[arg-type]
                                      changes_since="changes-since"))
    assert [p.split("?stale&")[1].split("&wait")[0] for p in api.paths] == [
        "index=0", "changes-since=5&index=5", "changes-since=6&index=6", "index=0", "changes-since=9&index=9",
        "index=0", "changes-since=10&index=10"]


# ---- the endpoint --------------------------------------------------------------------------------

def test_the_endpoint_answers_changed_gateways_deletions_and_resync() -> None:
    dc1 = EndpointDC("dc1")

    async def scenario() -> None:
        for index, name in enumerate(("dc2", "dc3", "dc4"), start=1):
            put_state(dc1, name, index)
        with dc1.twin.state.writer() as writer:
            writer.put_federation_state(FederationState("dc2", (), modify_index=4), 4)  # no gateways left
            writer.delete_federation_state("dc3", 5)
        meta, delta = await dc1.endpoint.mesh_gateways_since(RequestHeader(min_query_index=3), 3)
        assert meta.index == 5 and delta["resync"] is False
        assert {dc: len(g) for dc, g in delta["mesh_gateways"].items()} == {"dc2": 0}
        assert delta["deleted"] == ["dc3"]
        for since in (0, 99):
            assert (await dc1.endpoint.mesh_gateways_since(RequestHeader(), since))[1] == {"resync": True}
        with pytest.raises(RPCError, match="since must be an integer") as caught:
            await dc1.endpoint.mesh_gateways_since(RequestHeader(), -1)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(scenario())


def test_a_follower_answers_the_delta_from_its_own_log_after_the_barrier_or_asks_for_a_resync(
        monkeypatch: pytest.MonkeyPatch) -> None:
    leader, leader_endpoint, follower_twin, router, follower = primary_follower(monkeypatch)

    async def scenario() -> None:
        for index, name in enumerate(("dc2", "dc3"), start=1):
            put_state(leader, name, index)
            with follower_twin.state.writer() as writer:
                writer.put_federation_state(leader.twin.state.federation_state_get(name)[1], index)
        meta, delta = await follower.mesh_gateways_since(RequestHeader(min_query_index=1), 1)
        assert meta.index == 2 and list(delta["mesh_gateways"]) == ["dc3"]
        assert router.methods == ["FederationState/ListSince"]  # index-only: no permission, no records
        put_state(leader, "dc4", 3)  # the follower never applies it: resync, nothing forwarded
        _, delta = await follower.mesh_gateways_since(RequestHeader(min_query_index=2), 2)
        assert delta == {"resync": True} and router.methods[1:] == ["FederationState/ListSince"]

    asyncio.run(scenario())


# ---- the route -----------------------------------------------------------------------------------

def served(scenario: Any) -> None:
    api = make_api("dc2")

    async def run() -> None:
        for index, name in enumerate(("dc1", "dc3", "dc4"), start=1):
            with api.state.writer() as writer:
                writer.put_federation_state(FederationState(name, (gateway(f"{name}-gw"),), modify_index=index), index)
        async with TestClient(TestServer(build_app(api))) as client:
            await scenario(client, api)

    asyncio.run(run())


PATH = "/v1/internal/federation-states/mesh-gateways"


def test_the_route_without_the_parameter_answers_consuls_list_and_with_it_the_delta_shapes() -> None:
    async def scenario(client: TestClient, api: Any) -> None:
        full = await client.get(PATH)
        assert full.status == 200 and sorted(await full.json()) == ["dc1", "dc3", "dc4"]
        assert full.headers["X-Consul-Index"] == "3"
        delta = await client.get(PATH, params={"changes-since": "1", "index": "1"})
        body = await delta.json()
        assert delta.status == 200 and delta.headers["X-Consul-Index"] == "3"
        assert sorted(body) == ["Changed", "Deleted", "Resync"] and body["Resync"] is False and body["Deleted"] == []
        assert sorted(body["Changed"]) == ["dc3", "dc4"]
        assert body["Changed"]["dc3"] == (await full.json())["dc3"]  # the same rows as the full list
        with api.state.writer() as writer:
            writer.delete_federation_state("dc3", 4)
        after = await (await client.get(PATH, params={"changes-since": "3", "index": "3"})).json()
        assert after == {"Resync": False, "Changed": {}, "Deleted": ["dc3"]}
        for since in ("0", "99"):
            resync = await client.get(PATH, params={"changes-since": since})
            assert resync.status == 200 and await resync.json() == {"Resync": True}
        assert sorted(await (await client.get(PATH)).json()) == ["dc1", "dc4"]  # the full list's cache kept

    served(scenario)


@pytest.mark.parametrize("value", ["", "-1", "x", "1.5", " 3", "18446744073709551616"])
def test_a_bad_changes_since_is_a_400_naming_it(value: str) -> None:
    async def scenario(client: TestClient, api: Any) -> None:
        answer = await client.get(PATH, params={"changes-since": value})
        assert answer.status == 400 and "changes-since" in await answer.text()

    served(scenario)


# ---- ACLs ----------------------------------------------------------------------------------------

def test_a_token_sees_in_the_delta_exactly_the_gateways_it_sees_in_the_full_list() -> None:
    """node:read on dc2's gateway only: dc3's gateway is hidden from the full list, and from the
    delta too. The full list drops a DC left with no gateway, as Consul's ListMeshGateways does;
    the delta keeps it with an empty list, so a caller that saw gateways there drops them."""
    rules = parse_rules('service "mesh-gateway" { policy = "read" }\nnode "dc2-gw" { policy = "read" }')
    identity = Identity("gw", Authorizer.from_rules([rules], DefaultPolicy.DENY))
    rows = {"dc2": [csn("2.2.2.2", "dc2-gw")], "dc3": [csn("3.3.3.3", "dc3-gw")]}
    full, full_removed = mesh_gateways_by_datacenter(identity, rows)
    delta, delta_removed = mesh_gateways_by_datacenter(identity, {"Resync": False, "Changed": rows, "Deleted": ["dc4"]})
    assert full_removed and delta_removed
    assert full == {"dc2": rows["dc2"]}
    assert delta == {"Resync": False, "Changed": {"dc2": rows["dc2"], "dc3": []}, "Deleted": ["dc4"]}
    assert mesh_gateways_by_datacenter(identity, {"Resync": True}) == ({"Resync": True}, False)
    everything = Identity("all", Authorizer.from_rules([parse_rules('node_prefix "" { policy = "read" }\n'
                                                                    'service_prefix "" { policy = "read" }')],
                                                       DefaultPolicy.DENY))
    assert mesh_gateways_by_datacenter(everything, {"Resync": False, "Changed": rows, "Deleted": []})[1] is False

"""FederationState.* endpoint (reference/federation.md §3) on the shared twins: real state machine,
real blocking-query engine, a router twin per datacenter."""

from __future__ import annotations

import asyncio
from typing import Any

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
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.endpoints.federation_state import FederationStateEndpoint
from tests.twins.server import ServerTwin, server_twin


class DC:
    def __init__(self, name: str) -> None:
        self.twin: ServerTwin = server_twin(name)
        self.observed: list[str] = []
        self.endpoint = FederationStateEndpoint(
            primary_datacenter="dc1", state=self.twin.state, raft=self.twin.raft, router=self.twin.router,
            queries=self.twin.queries, observe=lambda name, seconds: self.observed.append(name),
        )


def federate(*dcs: DC) -> None:
    for dc in dcs:
        dc.twin.router.peers = {other.twin.datacenter: other.endpoint.handlers() for other in dcs if other is not dc}


def gateway(node: str) -> CheckServiceNode:
    return CheckServiceNode(
        node=Node(node=node, address="10.0.0.9"),
        service=NodeService(id="mgw", service="mesh-gateway", kind=KIND_MESH_GATEWAY, port=8443),
    )


def wire_state(datacenter: str, *gateways: CheckServiceNode, updated_at: str = "") -> dict[str, Any]:
    return to_wire(FederationState(datacenter, tuple(gateways), updated_at=updated_at))


def test_a_write_at_a_secondary_lands_in_the_primary_only() -> None:
    """§3: writes are re-targeted to the primary wherever they arrive."""
    dc1, dc2 = DC("dc1"), DC("dc2")
    federate(dc1, dc2)

    async def scenario() -> None:
        _, reply = await dc2.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state("dc2", gateway("g1"))})
        assert reply is True
        assert dc2.twin.router.calls == [("FederationState/Apply", "dc1", True)]
        _, stored = dc1.twin.state.federation_state_get("dc2")
        assert stored is not None and [g.node.node for g in stored.mesh_gateways] == ["g1"]
        assert dc2.twin.state.federation_state_get("dc2")[1] is None
        assert dc1.observed == ["apply"] and dc2.observed == []

    asyncio.run(scenario())


def test_upsert_stamps_updated_at_only_when_the_writer_left_it_empty() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        await dc1.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state("dc2")})
        await dc1.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state("dc3", updated_at="2025-01-01T00:00:00Z")})
        stamped = dc1.twin.state.federation_state_get("dc2")[1]
        kept = dc1.twin.state.federation_state_get("dc3")[1]
        assert stamped is not None and stamped.updated_at.endswith("Z") and stamped.updated_at[:2] == "20"
        assert kept is not None and kept.updated_at == "2025-01-01T00:00:00Z"

    asyncio.run(scenario())


def test_delete_answers_false_and_removes_the_record() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        await dc1.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state("dc2")})
        meta, reply = await dc1.endpoint.apply(RequestHeader(), {"op": "delete", "state": {"datacenter": "dc2"}})
        assert reply is False
        assert dc1.twin.state.federation_state_get("dc2")[1] is None
        assert meta.index == dc1.twin.state.index("federation_states") == 2

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not a map", "body must be a map"),
        ({"op": "upsert", "state": {}}, "missing federation state datacenter"),
        ({"op": "replace", "state": {"datacenter": "dc2"}}, "Invalid federation state operation: replace"),
        ({"op": "upsert", "state": {"datacenter": "dc2", "mesh_gateways": [{"node": 7}]}}, "malformed federation state"),
    ],
)
def test_bad_writes_are_invalid_argument_and_never_reach_the_log(body: Any, message: str) -> None:
    dc1 = DC("dc1")
    with pytest.raises(RPCError) as caught:
        asyncio.run(dc1.endpoint.apply(RequestHeader(), body))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and message in caught.value.message
    assert dc1.twin.raft.commands == []


def test_blocking_get_waits_for_the_record_to_exist_not_just_for_the_index_to_move() -> None:
    """§3.5: FederationState.Get with wait-for-existence ignores index moves while the record is missing."""
    dc1 = DC("dc1")

    async def scenario() -> None:
        await dc1.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state("dc3")})
        header = RequestHeader(min_query_index=1, max_query_time=5.0)
        waiting = asyncio.create_task(dc1.endpoint.get(header, {"datacenter": "dc2"}))
        await asyncio.sleep(0.01)
        await dc1.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state("dc4")})
        await asyncio.sleep(0.01)
        assert not waiting.done(), "an unrelated write must not end the wait"
        await dc1.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state("dc2", gateway("g2"))})
        meta, body = await asyncio.wait_for(waiting, 1.0)
        assert meta.index == 3 and body["state"]["datacenter"] == "dc2"

    asyncio.run(scenario())


def test_get_without_a_name_is_invalid() -> None:
    with pytest.raises(RPCError, match="Missing datacenter name"):
        asyncio.run(DC("dc1").endpoint.get(RequestHeader(), {}))


def test_list_and_mesh_gateways_read_the_local_copy_and_skip_datacenters_without_gateways() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        for state in (wire_state("dc3", gateway("a"), gateway("b")), wire_state("dc2")):
            await dc1.endpoint.apply(RequestHeader(), {"op": "upsert", "state": state})
        _, listed = await dc1.endpoint.list(RequestHeader(), {})
        meta, by_dc = await dc1.endpoint.list_mesh_gateways(RequestHeader(), {})
        assert [s["datacenter"] for s in listed] == ["dc2", "dc3"]
        assert {dc: [g["node"]["node"] for g in gws] for dc, gws in by_dc.items()} == {"dc3": ["a", "b"]}
        assert meta.index == 2 and meta.known_leader
        assert dc1.observed == ["apply", "apply", "list", "list_mesh_gateways"]

    asyncio.run(scenario())


def test_a_read_for_another_datacenter_is_served_there() -> None:
    dc1, dc2 = DC("dc1"), DC("dc2")
    federate(dc1, dc2)

    async def scenario() -> None:
        await dc2.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state("dc2", gateway("g"))})
        _, local = await dc2.endpoint.list(RequestHeader(), {})
        _, remote = await dc2.endpoint.list(RequestHeader(datacenter="dc1"), {})
        assert local == [] and [s["datacenter"] for s in remote] == ["dc2"]
        dc2.twin.router.wan_up = False
        with pytest.raises(RPCError, match="No path to datacenter: dc1"):
            await dc2.endpoint.list(RequestHeader(datacenter="dc1"), {})

    asyncio.run(scenario())


def test_list_since_answers_changes_deletions_and_resync() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        for name in ("dc2", "dc3", "dc4"):
            await dc1.endpoint.apply(RequestHeader(), {"op": "upsert", "state": wire_state(name)})
        await dc1.endpoint.apply(RequestHeader(), {"op": "delete", "state": {"datacenter": "DC3"}})
        _, full = await dc1.endpoint.list_since(RequestHeader(), {"since": 0})
        assert full == {"resync": True}
        meta, delta = await dc1.endpoint.list_since(RequestHeader(min_query_index=1), {"since": 1})
        assert meta.index == 4 and delta["resync"] is False
        assert [s["datacenter"] for s in delta["states"]] == ["dc4"] and delta["deleted"] == ["dc3"]
        _, ahead = await dc1.endpoint.list_since(RequestHeader(), {"since": 99})
        assert ahead == {"resync": True}
        _, barrier = await dc1.endpoint.list_since(RequestHeader(), {"since": 0, "index_only": True})
        assert barrier == {}

    asyncio.run(scenario())


@pytest.mark.parametrize("since", [-1, "3", True, 1.5])
def test_list_since_refuses_a_bad_index(since: Any) -> None:
    with pytest.raises(RPCError, match="since must be an integer") as caught:
        asyncio.run(DC("dc1").endpoint.list_since(RequestHeader(), {"since": since}))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


class ForwardingRouter:
    """A follower's router for default-consistency reads: everything goes to the leader."""

    def __init__(self, leader: FederationStateEndpoint) -> None:
        self.leader = leader
        self.methods: list[str] = []

    async def serve(self, method: str, header: RequestHeader, body: Any, local: Any, *, write: bool) -> Any:
        self.methods.append(method)
        return await self.leader.handlers()[method](header.forwarded(), body)


def put_state(dc: DC, name: str, index: int) -> None:
    with dc.twin.state.writer() as writer:
        writer.put_federation_state(FederationState(name, (gateway(f"{name}-gw"),), modify_index=index), index)


def primary_follower(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[DC, FederationStateEndpoint, Any, ForwardingRouter, FederationStateEndpoint]:
    """A primary's leader and a follower whose router forwards to it (with a short catch-up
    bound): (leader, its endpoint, the follower's twin, its router, its endpoint)."""
    import meshfed.server.endpoints.federation_state as module

    monkeypatch.setattr(module, "BARRIER_CATCH_UP", 0.2)
    leader, follower_twin = DC("dc1"), server_twin("dc1")
    leader_endpoint = FederationStateEndpoint(primary_datacenter="dc1", state=leader.twin.state, raft=leader.twin.raft,
                                              router=leader.twin.router, queries=leader.twin.queries, datacenter="dc1")
    router = ForwardingRouter(leader_endpoint)
    follower = FederationStateEndpoint(primary_datacenter="dc1", state=follower_twin.state, raft=follower_twin.raft,
                                       router=router, queries=follower_twin.queries, datacenter="dc1")
    return leader, leader_endpoint, follower_twin, router, follower


def test_a_follower_answers_mesh_gateways_from_its_store_after_an_index_barrier(monkeypatch: pytest.MonkeyPatch) -> None:
    leader, leader_endpoint, follower_twin, router, follower = primary_follower(monkeypatch)

    async def scenario() -> None:
        for index, name in enumerate(("dc2", "dc3"), start=1):
            put_state(leader, name, index)
            with follower_twin.state.writer() as writer:  # the follower has applied the same entries
                writer.put_federation_state(leader.twin.state.federation_state_get(name)[1], index)
        meta, by_dc = await follower.list_mesh_gateways(RequestHeader(), {})
        assert sorted(by_dc) == ["dc2", "dc3"] and meta.index == 2
        assert router.methods == ["FederationState/ListSince"]  # the barrier only, no list forwarded
        _, on_leader = await leader_endpoint.list_mesh_gateways(RequestHeader(), {})  # served here: the list itself
        assert on_leader == by_dc
        # The leader moves on and this follower does not catch up: the whole list is forwarded.
        put_state(leader, "dc4", 3)
        meta, by_dc = await follower.list_mesh_gateways(RequestHeader(), {})
        assert sorted(by_dc) == ["dc2", "dc3", "dc4"] and meta.index == 3
        assert router.methods[1:] == ["FederationState/ListSince", "FederationState/ListMeshGateways"]

    asyncio.run(scenario())

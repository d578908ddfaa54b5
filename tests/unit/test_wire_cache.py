"""Encoding caches of the federation-state lists (issue #13, goal 1): a write re-encodes only the
record it changed, answers stay byte-for-byte what the uncached code produced."""

from __future__ import annotations

import dataclasses
import json

from meshfed.fsm.records import CheckServiceNode, FederationState, Node, NodeService, csn_from_wire, to_wire
from meshfed.server.endpoints.wire_cache import FederationStateWire
from meshfed.server.http.routes_internal import GatewayListJson
from meshfed.server.http.shapes import csn_json


def gateway(dc: str, n: int) -> CheckServiceNode:
    return CheckServiceNode(
        node=Node(node=f"{dc}-gw{n}", address=f"10.0.0.{n}"),
        service=NodeService(id="mesh-gateway", service="mesh-gateway", kind="mesh-gateway", port=8443),
    )


def table(count: int) -> list[FederationState]:
    return [FederationState(f"dc{i:03d}", (gateway(f"dc{i:03d}", 1), gateway(f"dc{i:03d}", 2)), modify_index=i + 1)
            for i in range(count)]


def test_wire_forms_equal_to_wire_and_only_changed_records_are_re_encoded() -> None:
    cache = FederationStateWire()
    states = table(100)
    assert cache.wire_list(states) == [to_wire(s) for s in states]
    assert cache.encoded == 100
    first = cache.wire_list(states)
    assert cache.encoded == 100  # nothing changed: nothing encoded
    states[7] = dataclasses.replace(states[7], updated_at="2026-01-01T00:00:00Z", modify_index=500)
    again = cache.wire_list(states)
    assert cache.encoded == 101
    assert again[7]["updated_at"] == "2026-01-01T00:00:00Z"
    assert again[6] is first[6]


def test_an_equal_but_new_record_is_re_encoded() -> None:
    """Identity, not (datacenter, modify_index): a restored record under a seen index is new."""
    cache = FederationStateWire()
    state = FederationState("dc1", (gateway("dc1", 1),), modify_index=5)
    cache.wire(state)
    other = FederationState("dc1", (gateway("dc1", 9),), modify_index=5)
    assert cache.wire(other)["mesh_gateways"][0]["node"]["node"] == "dc1-gw9"


def test_mesh_gateways_shape_and_removed_datacenters_are_forgotten() -> None:
    cache = FederationStateWire()
    states = [*table(3), FederationState("empty")]
    by_dc = cache.mesh_gateways(states)
    assert list(by_dc) == ["dc000", "dc001", "dc002"]
    assert by_dc["dc001"] == [to_wire(g) for g in states[1].mesh_gateways]
    cache.wire_list(states[:1])
    assert cache.wire_list(states[:1]) and len(cache._by_dc) == 1


def test_gateway_list_json_matches_the_uncached_encoding_and_reuses_unchanged_lists() -> None:
    cache = FederationStateWire()
    encoder = GatewayListJson()
    states = table(50)
    by_dc = cache.mesh_gateways(states)
    expected = {dc: [csn_json(csn_from_wire(c)) for c in gws] for dc, gws in by_dc.items()}
    assert json.loads(encoder.body(by_dc)) == expected
    states[3] = FederationState("dc003", (gateway("dc003", 7),), modify_index=99)
    changed = cache.mesh_gateways(states)
    answer = json.loads(encoder.body(changed))
    assert [g["Node"]["Node"] for g in answer["dc003"]] == ["dc003-gw7"]
    assert answer["dc004"] == expected["dc004"]
    # A datacenter that left the table leaves the answer and the cache.
    del changed["dc010"]
    assert "dc010" not in json.loads(encoder.body(changed))
    assert "dc010" not in encoder._by_dc


def test_gateway_list_json_reuses_an_equal_list_forwarded_from_the_leader() -> None:
    """On a follower the answer is decoded afresh each time: equal lists must still hit."""
    encoder = GatewayListJson()
    first = FederationStateWire().mesh_gateways(table(3))
    encoder.body(first)
    cached = encoder._by_dc["dc001"][1]
    decoded_again = FederationStateWire().mesh_gateways(table(3))  # equal content, new objects
    encoder.body(decoded_again)
    assert encoder._by_dc["dc001"][1] is cached

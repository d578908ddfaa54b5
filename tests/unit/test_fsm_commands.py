"""Commands: shape validation (field names Consul clients know), defaults, and the log encoding."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.fsm.commands import (
    CatalogDeregister,
    CatalogRegister,
    CheckUpdate,
    FederationStateBatchUpsert,
    FederationStateDelete,
    FederationStateUpsert,
    Noop,
    ServerRegister,
    validate,
    with_defaults,
)
from meshfed.fsm.log_entries import TAG_CATALOG_REGISTER, decode_batch, encode_batch
from meshfed.fsm.records import (
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
    ServiceAddress,
)
from meshfed.fsm.type_checks import CommandError

NODE = Node(node="gw1", address="10.0.0.5", tagged_addresses={"wan": "198.51.100.5"}, meta={"rack": "a"})
SERVICE = NodeService(
    id="mgw",
    service="mesh-gateway",
    kind="mesh-gateway",
    tags=("a", "b"),
    port=8443,
    tagged_addresses={"wan": ServiceAddress("198.51.100.5", 443)},
    meta={"consul-wan-federation": "1"},
)
CHECK = HealthCheck(node="gw1", check_id="mgw-ttl", status="passing", service_id="mgw", type="ttl", ttl="30s")
GATEWAY = CheckServiceNode(node=NODE, service=SERVICE, checks=(CHECK,))

EVERY_COMMAND = [
    CatalogRegister(node=NODE, service=SERVICE, checks=(CHECK,)),
    CatalogRegister(node=NODE),
    CatalogDeregister(node="gw1", service_id="mgw", check_id="mgw-ttl"),
    CheckUpdate(node="gw1", check_id="mgw-ttl", status="warning", output="slow", at=1700000000.25),
    FederationStateUpsert(
        FederationState(datacenter="dc2", mesh_gateways=(GATEWAY,), updated_at="2024-01-01T00:00:00Z")
    ),
    FederationStateDelete(datacenter="dc2"),
    FederationStateBatchUpsert((FederationState(datacenter="dc2", mesh_gateways=(GATEWAY,)), FederationState("dc3"))),
    ServerRegister(ServerInfo("s1", "dc1", "10.0.0.1:8300", "10.0.0.1:8502", "10.0.0.1:8500")),
    Noop(),
]


def field_of(command) -> str:
    with pytest.raises(CommandError) as caught:
        validate(command)
    return caught.value.field


# ---- validate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: type(c).__name__)
def test_every_well_formed_command_validates(command):
    validate(command)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (CatalogRegister(node=dataclasses.replace(NODE, node="")), "Node"),
        (CatalogRegister(node=dataclasses.replace(NODE, address="")), "Address"),
        (CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, service="")), "Service.Service"),
        (CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, id="")), "Service.ID"),
        (CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, port=65536)), "Service.Port"),
        (CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, port=-1)), "Service.Port"),
        (
            CatalogRegister(
                node=NODE,
                service=dataclasses.replace(SERVICE, tagged_addresses={"wan": ServiceAddress("x", 70000)}),
            ),
            "Service.TaggedAddresses[wan].Port",
        ),
        (CatalogRegister(node=NODE, checks=(dataclasses.replace(CHECK, check_id=""),)), "Check.CheckID"),
        (CatalogRegister(node=NODE, checks=(dataclasses.replace(CHECK, status="ok"),)), "Check.Status"),
        (CatalogRegister(node=NODE, checks=(dataclasses.replace(CHECK, node="other"),)), "Check.Node"),
        (CatalogDeregister(node=""), "Node"),
        (CheckUpdate(node="", check_id="c", status="passing"), "Node"),
        (CheckUpdate(node="n", check_id="", status="passing"), "CheckID"),
        (CheckUpdate(node="n", check_id="c", status=""), "Status"),
        (CheckUpdate(node="n", check_id="c", status="maintenance"), "Status"),
        (CheckUpdate(node="n", check_id="c", status="passing", at=float("nan")), "At"),
        (FederationStateUpsert(FederationState(datacenter="")), "Datacenter"),
        (
            FederationStateUpsert(
                FederationState(
                    datacenter="dc2",
                    mesh_gateways=(
                        GATEWAY,
                        dataclasses.replace(GATEWAY, node=dataclasses.replace(NODE, node="")),
                    ),
                )
            ),
            "MeshGateways[1].Node.Node",
        ),
        (
            FederationStateUpsert(
                FederationState(
                    datacenter="dc2",
                    mesh_gateways=(
                        dataclasses.replace(GATEWAY, service=dataclasses.replace(SERVICE, service="")),
                    ),
                )
            ),
            "MeshGateways[0].Service.Service",
        ),
        (
            FederationStateUpsert(
                FederationState(
                    datacenter="dc2",
                    mesh_gateways=(
                        dataclasses.replace(GATEWAY, service=dataclasses.replace(SERVICE, port=99999)),
                    ),
                )
            ),
            "MeshGateways[0].Service.Port",
        ),
        (FederationStateDelete(datacenter=""), "Datacenter"),
        (FederationStateBatchUpsert(()), "States"),
        (FederationStateBatchUpsert((FederationState("dc2"), FederationState(""))), "States[1].Datacenter"),
        (
            FederationStateBatchUpsert((FederationState(
                "dc2", (dataclasses.replace(GATEWAY, service=dataclasses.replace(SERVICE, port=99999)),)),)),
            "States[0].MeshGateways[0].Service.Port",
        ),
        (ServerRegister(ServerInfo("", "dc1", "a:1", "a:2", "a:3")), "Node"),
        (ServerRegister(ServerInfo("s1", "", "a:1", "a:2", "a:3")), "Datacenter"),
    ],
)
def test_validate_names_the_field(command, field):
    assert field_of(command) == field


def test_boundary_ports_are_accepted():
    for port in (0, 65535):
        validate(CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, port=port)))


def test_empty_check_status_is_accepted_at_registration():
    validate(CatalogRegister(node=NODE, service=SERVICE, checks=(dataclasses.replace(CHECK, status=""),)))


def test_check_node_matches_case_insensitively():
    validate(CatalogRegister(node=NODE, checks=(dataclasses.replace(CHECK, node="GW1", service_id=""),)))


def test_missing_datacenter_message_is_consuls():
    with pytest.raises(CommandError, match="^missing datacenter on federation state$"):
        validate(FederationStateUpsert(FederationState(datacenter="")))


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (CatalogRegister(node=dataclasses.replace(NODE, node=7)), "Node"),
        (CatalogRegister(node=dataclasses.replace(NODE, meta={"k": 1})), "NodeMeta[k]"),
        (CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, port="80")), "Service.Port"),
        (CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, port=True)), "Service.Port"),
        (CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, tags=("a", 3))), "Service.Tags[1]"),
        (CatalogRegister(node=NODE, checks=(dataclasses.replace(CHECK, status=None),)), "Check.Status"),
        (CheckUpdate(node="n", check_id="c", status="passing", at="now"), "At"),
        (ServerRegister(server=None), ""),
    ],
)
def test_wrong_types_are_rejected_with_the_field(command, field):
    assert field_of(command) == field


def test_error_message_carries_the_value():
    with pytest.raises(CommandError, match="70000"):
        validate(CatalogRegister(node=NODE, service=dataclasses.replace(SERVICE, port=70000)))


def test_unknown_command_type_is_rejected():
    with pytest.raises(CommandError):
        validate("not a command")  # type: ignore[arg-type]


# ---- with_defaults ----------------------------------------------------------------------------


def test_with_defaults_fills_service_id_and_check_node():
    command = CatalogRegister(
        node=NODE,
        service=dataclasses.replace(SERVICE, id=""),
        checks=(dataclasses.replace(CHECK, node=""),),
    )
    filled = with_defaults(command)
    assert filled.service.id == "mesh-gateway"
    assert filled.checks[0].node == "gw1"
    validate(filled)
    assert field_of(command) == "Service.ID"  # without defaults it does not validate


def test_with_defaults_keeps_given_values_and_other_commands():
    command = CatalogRegister(node=NODE, service=SERVICE, checks=(CHECK,))
    assert with_defaults(command) == command
    assert with_defaults(Noop()) == Noop()


# ---- encoding ---------------------------------------------------------------------------------


def test_batch_round_trip_preserves_every_command_and_request_id():
    entries = [(f"req-{i}", command) for i, command in enumerate(EVERY_COMMAND)] + [("", Noop())]
    decoded = decode_batch(encode_batch(entries))
    assert decoded == entries
    assert [type(c) for _, c in decoded] == [type(c) for _, c in entries]


def test_wire_form_is_a_list_of_tag_id_body():
    payload = encode_batch([("r1", CatalogRegister(node=NODE))])
    [[tag, request_id, body]] = msgpack.unpackb(payload, raw=False)
    assert (tag, request_id) == (TAG_CATALOG_REGISTER, "r1")
    assert body["node"]["node"] == "gw1"
    assert body["service"] is None


def test_decode_ignores_unknown_body_keys_and_fills_defaults():
    payload = msgpack.packb([["cat.dereg/1", "r", {"node": "n1", "added_later": 1}]])
    assert decode_batch(payload) == [("r", CatalogDeregister(node="n1"))]


def test_decode_canonicalises_integer_timestamps():
    payload = msgpack.packb([["chk.upd/1", "", {"node": "n", "check_id": "c", "status": "passing", "at": 5}]])
    [(_, command)] = decode_batch(payload)
    assert isinstance(command.at, float) and command.at == 5.0


def test_decode_does_not_apply_semantic_rules():
    """An empty node name is a per-command `invalid` result in apply, not a batch failure."""
    payload = encode_batch([("", CatalogDeregister(node=""))])
    assert decode_batch(payload) == [("", CatalogDeregister(node=""))]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        msgpack.packb({"not": "a list"}),
        msgpack.packb([["cat.reg/1", "r"]]),
        msgpack.packb([["nope/9", "r", {}]]),
        msgpack.packb([["noop/1", 5, {}]]),
        msgpack.packb([["noop/1", "r", []]]),
        msgpack.packb([["cat.reg/1", "r", {}]]),
        msgpack.packb([["cat.reg/1", "r", {"node": {"node": "n", "address": 5}}]]),
        msgpack.packb([["cat.reg/1", "r", {"node": {"node": "n", "address": "a"}, "checks": 3}]]),
        msgpack.packb([["srv.reg/1", "r", {"server": {"node": "s"}}]]),
        msgpack.packb([["fed.set/1", "r", {"state": {"datacenter": "d", "mesh_gateways": [{"node": {}}]}}]]),
        msgpack.packb([["noop/1", "r", {}]]) + b"\x00",
    ],
)
def test_decode_rejects_junk_with_command_error(payload):
    with pytest.raises(CommandError):
        decode_batch(payload)


def test_encode_rejects_non_commands():
    with pytest.raises(CommandError):
        encode_batch([("r", "nope")])  # type: ignore[list-item]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_of_random_bytes_raises_only_command_error(payload):
    try:
        decode_batch(payload)
    except CommandError:
        pass


_wire_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_tags = st.sampled_from(
    ["cat.reg/1", "cat.dereg/1", "chk.upd/1", "fed.set/1", "fed.del/1", "srv.reg/1", "noop/1"]
)
_bodies = st.dictionaries(
    st.sampled_from(
        ["node", "service", "checks", "check_id", "status", "at", "state", "server", "datacenter"]
    ),
    _wire_values,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_tags, st.text(max_size=4) | st.integers(0, 9), _bodies), max_size=3))
def test_decode_of_structured_junk_raises_only_command_error(items):
    """Near-miss shapes (right tags, wrong bodies) get deeper into the decoders than random bytes."""
    try:
        decoded = decode_batch(msgpack.packb([list(item) for item in items], use_bin_type=True))
    except CommandError:
        return
    for _, command in decoded:  # whatever decodes is well-typed enough to validate without crashing
        try:
            validate(command)
        except CommandError:
            pass

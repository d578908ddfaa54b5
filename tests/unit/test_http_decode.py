"""Catalog request bodies decoded into records (server/http/decode.py).

Pins the client-compatibility rules of reference/operators.md §2 (keys matched case-insensitively,
snake_case aliases, py-consul's lowercase bodies) and Consul's `Catalog.Register` pre-apply
defaults, and that every rejection names the field in Consul's spelling.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import consul
import pytest
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.fsm.records import CheckServiceNode
from meshfed.server.http import shapes
from meshfed.server.http.decode import (
    DecodeError,
    decode_catalog_deregister,
    decode_catalog_register,
    duration_seconds,
    lookup,
)


def gateway_body() -> dict[str, Any]:
    """A wanfed mesh gateway registration shaped like reference/federation.md §4, in Consul casing."""
    return {
        "ID": "3fb9a696-8209-4eee-a1f7-48600deb9716",
        "Node": "gateway1",
        "Address": "10.0.2.5",
        "Datacenter": "dc2",
        "TaggedAddresses": {"lan": "10.0.2.5", "wan": "198.51.100.7"},
        "NodeMeta": {"Rack-ID": "r7"},
        "Service": {
            "Kind": "mesh-gateway",
            "ID": "mesh-gateway",
            "Service": "mesh-gateway",
            "Tags": ["edge"],
            "Address": "10.0.2.5",
            "TaggedAddresses": {
                "lan": {"Address": "10.0.2.5", "Port": 8443},
                "wan": {"Address": "198.51.100.7", "Port": 443},
            },
            "Meta": {"consul-wan-federation": "1", "Owner-Team": "net"},
            "Port": 8443,
            "Weights": {"Passing": 3, "Warning": 1},
            "EnableTagOverride": True,
            "Proxy": {"MeshGateway": {"Mode": "local"}, "Config": {"connect_timeout_ms": 5000}},
            "Connect": {"Native": False},
        },
        "Check": {
            "CheckID": "service:mesh-gateway",
            "Name": "gateway alive",
            "Status": "passing",
            "Notes": "heartbeat",
            "Output": "ok",
            "ServiceID": "mesh-gateway",
            "ServiceName": "stale-name",
            "TTL": "30s",
            "Definition": {"DeregisterCriticalServiceAfter": "90m"},
        },
        "Checks": [
            {
                "CheckID": "serfHealth",
                "Name": "node health",
                "Status": "warning",
                "Interval": "10s",
                "Timeout": "1s",
                "Type": "http",
            }
        ],
        "SkipNodeUpdate": False,
        "WriteRequest": {"Token": "ignored"},
    }


# ---- key spellings ------------------------------------------------------------------------------

# Maps whose keys are user data: their keys must come out exactly as sent, whatever the casing
# transform does to the struct keys around them.
FREE_FORM = {"TaggedAddresses", "NodeMeta", "Meta", "Proxy", "Connect", "Definition"}

SNAKE_ALIASES = {
    "TaggedAddresses": "tagged_addresses",
    "NodeMeta": "node_meta",
    "EnableTagOverride": "enable_tag_override",
    "CheckID": "check_id",
    "ServiceID": "service_id",
    "ServiceName": "service_name",
}


def recase(body: Any, rename: Callable[[str], str], parent: str = "") -> Any:
    """Rename struct keys at every level, leaving free-form maps' own keys alone.

    Service.TaggedAddresses is free-form at the tag level but its values are {Address, Port}
    structs, so their keys are renamed too.
    """
    if isinstance(body, list):
        return [recase(item, rename, parent) for item in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in FREE_FORM:
            if key == "TaggedAddresses" and parent == "Service":
                value = {tag: recase(addr, rename) for tag, addr in value.items()}
        else:
            value = recase(value, rename, key)
        out[rename(key)] = value
    return out


SPELLINGS: dict[str, Callable[[str], str]] = {
    "consul": lambda key: key,
    "lower": str.lower,
    "upper": str.upper,
    "snake": lambda key: SNAKE_ALIASES.get(key, key),
    "snake-lower": lambda key: SNAKE_ALIASES.get(key, key).lower(),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_spelling_decodes_to_the_same_records(spelling: str) -> None:
    expected = decode_catalog_register(gateway_body(), "dc1")
    assert decode_catalog_register(recase(gateway_body(), SPELLINGS[spelling]), "dc1") == expected


def test_recase_really_changes_the_body() -> None:
    """Guards the test above against a helper that silently renames nothing."""
    lowered = recase(gateway_body(), str.lower)
    assert "node" in lowered and "Node" not in lowered
    assert "port" in lowered["service"]["taggedaddresses"]["wan"]
    assert "Rack-ID" in lowered["nodemeta"]
    assert "consul-wan-federation" in lowered["service"]["meta"]
    snake = recase(gateway_body(), SPELLINGS["snake"])
    assert "tagged_addresses" in snake and "check_id" in snake["Check"]


def test_gateway_registration_decodes_every_field() -> None:
    node, service, checks = decode_catalog_register(gateway_body(), "dc1")
    assert node.node == "gateway1" and node.address == "10.0.2.5"
    assert node.id == "3fb9a696-8209-4eee-a1f7-48600deb9716"
    assert node.datacenter == "dc2"
    assert node.tagged_addresses == {"lan": "10.0.2.5", "wan": "198.51.100.7"}
    assert node.meta == {"Rack-ID": "r7"}
    assert service is not None
    assert (service.kind, service.id, service.service, service.tags) == (
        "mesh-gateway",
        "mesh-gateway",
        "mesh-gateway",
        ("edge",),
    )
    assert service.tagged_addresses["wan"].address == "198.51.100.7"
    assert service.tagged_addresses["wan"].port == 443
    assert service.meta == {"consul-wan-federation": "1", "Owner-Team": "net"}
    assert (service.port, service.weights.passing, service.weights.warning) == (8443, 3, 1)
    assert service.enable_tag_override is True
    assert service.proxy == {"MeshGateway": {"Mode": "local"}, "Config": {"connect_timeout_ms": 5000}}
    assert service.connect == {"Native": False}

    ttl_check, node_check = checks
    assert ttl_check.check_id == "service:mesh-gateway" and ttl_check.node == "gateway1"
    assert (ttl_check.status, ttl_check.notes, ttl_check.output) == ("passing", "heartbeat", "ok")
    assert (ttl_check.ttl, ttl_check.type) == ("30s", "ttl")
    # Tied to the service registered with it: name and tags come from the service.
    assert (ttl_check.service_id, ttl_check.service_name, ttl_check.service_tags) == (
        "mesh-gateway",
        "mesh-gateway",
        ("edge",),
    )
    assert ttl_check.definition == {"DeregisterCriticalServiceAfter": "90m"}
    assert (node_check.check_id, node_check.status, node_check.type) == ("serfHealth", "warning", "http")
    assert (node_check.interval, node_check.timeout, node_check.service_id) == ("10s", "1s", "")


def test_round_trip_through_shapes_matches_consul_json() -> None:
    node, service, checks = decode_catalog_register(recase(gateway_body(), str.lower), "dc1")
    assert service is not None
    rendered = shapes.csn_json(CheckServiceNode(node=node, service=service, checks=checks))
    body = gateway_body()
    sent_service = body["Service"]
    assert rendered["Node"]["Node"] == body["Node"]
    assert rendered["Node"]["TaggedAddresses"] == body["TaggedAddresses"]
    assert rendered["Node"]["Meta"] == body["NodeMeta"]
    for key in ("Kind", "ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port", "Weights"):
        assert rendered["Service"][key] == sent_service[key], key
    assert rendered["Service"]["EnableTagOverride"] is True
    assert rendered["Service"]["Proxy"] == {"Expose": {}, **sent_service["Proxy"]}
    assert rendered["Checks"][0]["CheckID"] == "service:mesh-gateway"
    assert rendered["Checks"][0]["Type"] == "ttl"
    assert rendered["Checks"][1]["Interval"] == "10s"
    json.dumps(rendered)


class RecordingHTTP:
    """Stands in for py-consul's HTTP client so the test sees the exact body it would send."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def put(
        self, callback: Any, path: str, params: Any = None, headers: Any = None, data: Any = None
    ) -> bool:
        self.bodies.append(json.loads(data))
        return True


def test_body_sent_by_py_consul_register_and_deregister() -> None:
    client = consul.Consul(host="127.0.0.1", port=1)
    recorder = RecordingHTTP()
    client.http = recorder
    client.catalog.register(
        "gateway1",
        "10.0.2.5",
        service={"Service": "mesh-gateway", "Kind": "mesh-gateway", "Port": 8443},
        check={"CheckID": "gw-ttl", "ServiceID": "mesh-gateway", "ttl": "15s"},
        dc="dc2",
        tagged_addresses={"wan": "198.51.100.7"},
    )
    client.catalog.deregister("gateway1", check_id="gw-ttl")
    client.catalog.deregister("gateway1", service_id="mesh-gateway")
    register_body, deregister_check, deregister_service = recorder.bodies
    assert "node" in register_body  # py-consul really sends lowercase keys

    node, service, (check,) = decode_catalog_register(register_body, "dc1")
    assert (node.node, node.address, node.datacenter) == ("gateway1", "10.0.2.5", "dc2")
    assert node.tagged_addresses == {"wan": "198.51.100.7"}
    assert service is not None and service.id == "mesh-gateway"
    assert (check.check_id, check.status, check.type, check.ttl) == ("gw-ttl", "critical", "ttl", "15s")
    assert check.service_name == "mesh-gateway"
    assert decode_catalog_deregister(deregister_check, "dc1") == ("gateway1", "", "gw-ttl")
    assert decode_catalog_deregister(deregister_service, "dc1") == ("gateway1", "mesh-gateway", "")


# ---- Consul's pre-apply defaults ----------------------------------------------------------------


def test_minimal_registration_defaults() -> None:
    node, service, checks = decode_catalog_register({"Node": "n1", "Address": "10.0.0.1"}, "dc9")
    assert node.datacenter == "dc9"
    assert (node.id, node.tagged_addresses, node.meta) == ("", {}, {})
    assert service is None and checks == ()


def test_null_service_and_check_mean_absent() -> None:
    body = {"Node": "n1", "Address": "a", "Service": None, "Check": None, "Checks": None}
    assert decode_catalog_register(body, "dc1")[1:] == (None, ())


def test_service_defaults() -> None:
    _, service, _ = decode_catalog_register(
        {"node": "n1", "address": "a", "service": {"service": "web"}}, "dc1"
    )
    assert service is not None
    assert service.id == "web"
    assert (service.kind, service.tags, service.port, service.meta) == ("", (), 0, {})
    assert (service.weights.passing, service.weights.warning) == (1, 1)
    assert (service.enable_tag_override, service.proxy, service.connect) == (False, {}, {})


def test_partial_weights_default_the_missing_side() -> None:
    body = {"Node": "n1", "Address": "a", "Service": {"Service": "web", "Weights": {"Warning": 0}}}
    _, service, _ = decode_catalog_register(body, "dc1")
    assert service is not None
    assert (service.weights.passing, service.weights.warning) == (1, 0)


def test_check_defaults_node_status_and_id_from_name() -> None:
    body = {"Node": "n1", "Address": "a", "Check": {"Name": "disk"}}
    (check,) = decode_catalog_register(body, "dc1")[2]
    assert (check.node, check.check_id, check.name, check.status, check.type) == (
        "n1",
        "disk",
        "disk",
        "critical",
        "",
    )


def test_check_node_compared_case_insensitively() -> None:
    body = {"Node": "Gateway1", "Address": "a", "Check": {"CheckID": "c", "Node": "gateway1"}}
    (check,) = decode_catalog_register(body, "dc1")[2]
    assert check.node == "Gateway1"


def test_check_for_other_service_is_not_rewritten() -> None:
    """Only a check naming the service of the same request is tied to it here."""
    body = {
        "Node": "n1",
        "Address": "a",
        "Service": {"Service": "web", "Tags": ["t"]},
        "Check": {"CheckID": "c", "ServiceID": "db", "ServiceName": "db"},
    }
    (check,) = decode_catalog_register(body, "dc1")[2]
    assert (check.service_id, check.service_name, check.service_tags) == ("db", "db", ())


def test_single_check_comes_before_checks_list() -> None:
    body = {
        "Node": "n1",
        "Address": "a",
        "Checks": [{"CheckID": "b"}, {"CheckID": "c"}],
        "Check": {"CheckID": "a"},
    }
    assert [c.check_id for c in decode_catalog_register(body, "dc1")[2]] == ["a", "b", "c"]


def test_free_form_maps_are_copied_not_shared() -> None:
    body = gateway_body()
    _, service, checks = decode_catalog_register(body, "dc1")
    body["Service"]["Proxy"]["MeshGateway"]["Mode"] = "remote"
    body["Check"]["Definition"]["DeregisterCriticalServiceAfter"] = "1m"
    assert service is not None and service.proxy["MeshGateway"] == {"Mode": "local"}
    assert checks[0].definition == {"DeregisterCriticalServiceAfter": "90m"}


# ---- errors name the field ----------------------------------------------------------------------


def with_service(**service: Any) -> dict[str, Any]:
    return {"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "web", **service}}


def with_check(**check: Any) -> dict[str, Any]:
    return {"Node": "n1", "Address": "10.0.0.1", "Check": {"CheckID": "c1", **check}}


REGISTER_ERRORS: list[tuple[Any, str, str]] = [
    ([], "", "expected a JSON object"),
    ("node", "", "expected a JSON object"),
    ({}, "Node", "missing node name"),
    ({"Node": 5, "Address": "a"}, "Node", "expected string, got 5"),
    ({"Node": "n1"}, "Address", "missing node address"),
    ({"Node": "n1", "Address": ["a"]}, "Address", "expected string"),
    ({"Node": "n1", "Address": "a", "ID": "nope"}, "ID", "expected a UUID"),
    ({"Node": "n1", "Address": "a", "Datacenter": 1}, "Datacenter", "expected string"),
    ({"Node": "n1", "Address": "a", "TaggedAddresses": ["wan"]}, "TaggedAddresses", "expected object"),
    (
        {"Node": "n1", "Address": "a", "tagged_addresses": {"wan": 1}},
        "TaggedAddresses.wan",
        "expected string",
    ),
    ({"Node": "n1", "Address": "a", "NodeMeta": {"rack": None}}, "NodeMeta.rack", "expected string"),
    ({"Node": "n1", "Address": "a", "Service": "web"}, "Service", "expected object, got 'web'"),
    ({"Node": "n1", "Address": "a", "Service": {}}, "Service.Service", "missing service name"),
    ({"Node": "n1", "Address": "a", "Service": {"ID": "w1"}}, "Service.Service", "required with ID"),
    (with_service(ID=3), "Service.ID", "expected string"),
    (with_service(Kind=True), "Service.Kind", "expected string"),
    (with_service(Port="abc"), "Service.Port", "expected integer 0-65535, got 'abc'"),
    (with_service(Port=70000), "Service.Port", "expected integer 0-65535, got 70000"),
    (with_service(Port=-1), "Service.Port", "expected integer 0-65535"),
    (with_service(Port=True), "Service.Port", "expected integer 0-65535, got True"),
    (with_service(Port=80.5), "Service.Port", "expected integer 0-65535"),
    (with_service(Tags="a,b"), "Service.Tags", "expected list of strings"),
    (with_service(Tags=["a", 1]), "Service.Tags[1]", "expected string, got 1"),
    (with_service(Address="0.0.0.0"), "Service.Address", "invalid service address"),
    (with_service(Address="::"), "Service.Address", "invalid service address"),
    (with_service(TaggedAddresses=[]), "Service.TaggedAddresses", "expected object"),
    (with_service(TaggedAddresses={"wan": "1.2.3.4"}), "Service.TaggedAddresses.wan", "expected object"),
    (
        with_service(TaggedAddresses={"wan": {"Address": "x", "Port": "443"}}),
        "Service.TaggedAddresses.wan.Port",
        "expected integer 0-65535",
    ),
    (
        with_service(TaggedAddresses={"lan": {"Address": 1}}),
        "Service.TaggedAddresses.lan.Address",
        "expected string",
    ),
    (with_service(Meta={"k": 1}), "Service.Meta.k", "expected string"),
    (with_service(Weights=[1, 1]), "Service.Weights", "expected object"),
    (with_service(Weights={"Passing": 0}), "Service.Weights.Passing", "expected integer >= 1"),
    (with_service(Weights={"Warning": -1}), "Service.Weights.Warning", "expected integer >= 0"),
    (with_service(EnableTagOverride="yes"), "Service.EnableTagOverride", "expected true or false"),
    (with_service(enabletagoverride=1), "Service.EnableTagOverride", "expected true or false"),
    (with_service(Proxy=[]), "Service.Proxy", "expected object"),
    (with_service(Connect="native"), "Service.Connect", "expected object"),
    (with_service(Kind="mesh-gateway"), "Service.Port", "non-zero port"),
    ({"Node": "n1", "Address": "a", "Check": "c"}, "Check", "expected object"),
    ({"Node": "n1", "Address": "a", "Check": {}}, "Check.CheckID", "missing check ID"),
    (with_check(Node="other"), "Check.Node", "doesn't match register request node 'n1'"),
    (with_check(Status="ok"), "Check.Status", "expected one of passing, warning, critical, got 'ok'"),
    (with_check(Status="PASSING"), "Check.Status", "expected one of"),
    ({"Node": "n1", "Address": "a", "Check": {"check_id": 7}}, "Check.CheckID", "expected string"),
    (with_check(ServiceID=["x"]), "Check.ServiceID", "expected string"),
    (with_check(service_name=1), "Check.ServiceName", "expected string"),
    (with_check(ServiceTags=[None]), "Check.ServiceTags[0]", "expected string"),
    (with_check(TTL="soon"), "Check.TTL", "positive duration"),
    (with_check(ttl="0s"), "Check.TTL", "positive duration"),
    (with_check(TTL="-5s"), "Check.TTL", "positive duration"),
    (with_check(TTL=30), "Check.TTL", "expected string"),
    (with_check(Interval="ten seconds"), "Check.Interval", "expected a duration"),
    (with_check(timeout="5"), "Check.Timeout", "expected a duration"),
    (with_check(Definition=["http"]), "Check.Definition", "expected object"),
    (with_check(Notes=0), "Check.Notes", "expected string"),
    ({"Node": "n1", "Address": "a", "Checks": {"CheckID": "c"}}, "Checks", "expected list"),
    ({"Node": "n1", "Address": "a", "Checks": [None]}, "Checks[0]", "expected object"),
    (
        {"Node": "n1", "Address": "a", "Checks": [{"CheckID": "a"}, {"CheckID": "b", "Status": "bad"}]},
        "Checks[1].Status",
        "expected one of",
    ),
    # Lowercase input still reports Consul's spelling of the field.
    (
        {"node": "n1", "address": "a", "service": {"service": "s", "port": "abc"}},
        "Service.Port",
        "expected integer",
    ),
    (
        {"node": "n1", "address": "a", "checks": [{"checkid": "c", "status": "up"}]},
        "Checks[0].Status",
        "one of",
    ),
]


@pytest.mark.parametrize(("body", "field", "reason"), REGISTER_ERRORS)
def test_register_errors_name_the_field(body: Any, field: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_catalog_register(body, "dc1")
    error = caught.value
    assert error.field == field
    assert reason in error.reason
    prefix = f"Request decode failed: {field}: " if field else "Request decode failed: "
    assert str(error).startswith(prefix)
    assert isinstance(error, ValueError)


def test_long_junk_values_are_truncated_in_messages() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_catalog_register({"Node": "x" * 10_000, "Address": list(range(5000))}, "dc1")
    assert caught.value.field == "Address"
    assert len(str(caught.value)) < 200


# ---- deregister ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"Node": "n1", "ServiceID": "web", "CheckID": "c"},
        {"node": "n1", "serviceid": "web", "checkid": "c"},
        {"NODE": "n1", "service_id": "web", "check_id": "c"},
        {
            "Node": "n1",
            "ServiceId": "web",
            "CheckId": "c",
            "Datacenter": "dc2",
            "WriteRequest": {"Token": "t"},
        },
    ],
)
def test_deregister_spellings(body: dict[str, Any]) -> None:
    assert decode_catalog_deregister(body, "dc1") == ("n1", "web", "c")


def test_deregister_node_only() -> None:
    assert decode_catalog_deregister({"Node": "n1"}, "dc1") == ("n1", "", "")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, ""),
        ({}, "Node"),
        ({"Node": ""}, "Node"),
        ({"Node": 1}, "Node"),
        ({"Node": "n1", "ServiceID": 3}, "ServiceID"),
        ({"Node": "n1", "checkid": {}}, "CheckID"),
        ({"Node": "n1", "Datacenter": []}, "Datacenter"),
    ],
)
def test_deregister_errors_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_catalog_deregister(body, "dc1")
    assert caught.value.field == field


# ---- lookup and durations -----------------------------------------------------------------------


def test_lookup_is_case_insensitive() -> None:
    assert lookup({"nOdE": "n1"}, "Node") == "n1"
    assert lookup({"node": "n1"}, "Missing", "NODE") == "n1"
    assert lookup({"x": 1}, "Node") is None


def test_lookup_prefers_exact_case_then_earlier_name() -> None:
    assert lookup({"node": "lower", "Node": "exact"}, "Node") == "exact"
    names = ("TaggedAddresses", "tagged_addresses")
    assert lookup({"tagged_addresses": "snake", "TaggedAddresses": "camel"}, *names) == "camel"
    # An exact alias beats a case-insensitive match of the canonical name.
    assert lookup({"tagged_addresses": "snake", "taggedaddresses": "lower"}, *names) == "snake"
    assert lookup({"TAGGED_ADDRESSES": "snake", "taggedaddresses": "lower"}, *names) == "lower"


def test_lookup_ignores_non_string_keys() -> None:
    assert lookup({1: "one", "Node": "n"}, "Node") == "n"
    assert lookup({1: "one"}, "1") is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("2us", 2e-6),
        ("5µs", 5e-6),
    ],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "-1s", "1d", "1 s", "10s ", "1.2.3s", "1e3s"])
def test_duration_seconds_rejects(text: str) -> None:
    assert duration_seconds(text) is None


# ---- junk never escapes as anything but DecodeError ---------------------------------------------

FIELD_NAMES = [
    "Node",
    "Address",
    "ID",
    "Datacenter",
    "TaggedAddresses",
    "tagged_addresses",
    "NodeMeta",
    "node_meta",
    "Service",
    "Check",
    "Checks",
    "Kind",
    "Tags",
    "Meta",
    "Port",
    "Weights",
    "Passing",
    "Warning",
    "EnableTagOverride",
    "enable_tag_override",
    "Proxy",
    "Connect",
    "CheckID",
    "check_id",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "service_id",
    "ServiceName",
    "service_name",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "TTL",
    "Definition",
    "SkipNodeUpdate",
    "lan",
    "wan",
]
PLAUSIBLE_STRINGS = [
    "n1",
    "10.0.0.1",
    "0.0.0.0",
    "dc1",
    "passing",
    "critical",
    "mesh-gateway",
    "10s",
    "0",
    "-1s",
]

keys = st.one_of(
    st.sampled_from(FIELD_NAMES),
    st.sampled_from(FIELD_NAMES).map(str.lower),
    st.text(max_size=6),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(PLAUSIBLE_STRINGS + ["3fb9a696-8209-4eee-a1f7-48600deb9716"]),
)
junk = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=25,
)
junk_objects = st.dictionaries(keys, junk, max_size=6)


def fields_of(
    required: dict[str, Any], optional: dict[str, Any], junk_required: bool = True
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the right field names, each value either plausible or junk, in random casing."""
    as_is = {name: value | junk if junk_required else value for name, value in required.items()}
    maybe = {name: value | junk for name, value in optional.items()}
    objects = st.fixed_dictionaries(as_is, optional=maybe)
    return st.one_of(objects, objects.map(lambda d: {key.lower(): value for key, value in d.items()}))


plausible_text = st.sampled_from(PLAUSIBLE_STRINGS)
string_maps = st.dictionaries(st.text(max_size=4), plausible_text, max_size=3)
service_bodies = fields_of(
    {"Service": st.sampled_from(["web", "mesh-gateway"])},
    {
        "ID": plausible_text,
        "Kind": st.sampled_from(["", "mesh-gateway"]),
        "Tags": st.lists(plausible_text, max_size=2),
        "Address": plausible_text,
        "TaggedAddresses": st.dictionaries(
            st.sampled_from(["lan", "wan"]),
            fields_of({"Address": plausible_text}, {"Port": st.integers(-1, 70000)}),
            max_size=2,
        ),
        "Meta": string_maps,
        "Port": st.integers(-1, 70000),
        "Weights": fields_of({}, {"Passing": st.integers(-1, 3), "Warning": st.integers(-1, 3)}),
        "EnableTagOverride": st.booleans(),
        "Proxy": junk_objects,
        "Connect": junk_objects,
    },
)
check_bodies = fields_of(
    {},
    {
        "Node": st.sampled_from(["n1", "N1", "n2"]),
        "CheckID": plausible_text,
        "Name": plausible_text,
        "Status": plausible_text,
        "ServiceID": st.sampled_from(["web", "mesh-gateway", "db"]),
        "ServiceTags": st.lists(plausible_text, max_size=2),
        "TTL": plausible_text,
        "Interval": plausible_text,
        "Timeout": plausible_text,
        "Definition": junk_objects,
    },
)
# Bodies that mostly get past the node checks so the junk reaches Service and Check decoding.
nearly_valid = fields_of(
    {"Node": st.sampled_from(["n1", "N1"]), "Address": st.just("10.0.0.1")},
    {
        "ID": st.just("3fb9a696-8209-4eee-a1f7-48600deb9716"),
        "TaggedAddresses": string_maps,
        "NodeMeta": string_maps,
        "Service": service_bodies,
        "Check": check_bodies,
        "Checks": st.lists(check_bodies, max_size=3),
    },
    junk_required=False,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HypothesisHealthCheck.too_slow])
@given(body=st.one_of(junk, junk_objects, nearly_valid))
def test_junk_register_bodies_raise_only_decode_error(body: Any) -> None:
    try:
        node, service, checks = decode_catalog_register(body, "dc1")
    except DecodeError as error:
        assert str(error).startswith("Request decode failed: ")
        return
    # Whatever was accepted must render as Consul JSON.
    json.dumps(shapes.node_json(node))
    if service is not None:
        json.dumps(shapes.csn_json(CheckServiceNode(node=node, service=service, checks=checks)))
        assert service.id and service.service
    for check in checks:
        assert check.node == node.node and check.check_id
        assert check.status in ("passing", "warning", "critical")


@settings(max_examples=200, deadline=None)
@given(body=st.one_of(junk, junk_objects))
def test_junk_deregister_bodies_raise_only_decode_error(body: Any) -> None:
    try:
        node, service_id, check_id = decode_catalog_deregister(body, "dc1")
    except DecodeError:
        return
    assert node and isinstance(service_id, str) and isinstance(check_id, str)

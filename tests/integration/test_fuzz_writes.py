"""Arbitrary JSON at every write endpoint of a running datacenter (issue #8 item 1).

Outside fuzzing once got 53 HTTP 500s out of 900 requests: deep nesting, integers past 64 bits
and lone surrogates broke the decoder, the forward to the leader or the error answer itself.
Here hypothesis throws whole arbitrary bodies and valid bodies with one field replaced by junk at
each write endpoint, on the leader and on a follower (whose writes are forwarded), and asserts:
never a 5xx, a refused write changes nothing (the store's index is where it was), and the server
still answers afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import next_block
from .harness import Datacenter

SURROGATES = st.sampled_from(["\ud800", "\udfff", "ok\udc80", "\ud83d"])
TEXT = st.one_of(st.text(max_size=12), SURROGATES, st.sampled_from(["", "web", "db", "*", "allow", "passing"]))
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) + 2),
    st.floats(allow_nan=True, allow_infinity=True),
)
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_VALUES = st.recursive(LEAVES, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4),
                           max_leaves=12)

REGISTRATION = {
    "Node": "fuzz-node", "Address": "127.0.0.9", "NodeMeta": {"rack": "r1"},
    "TaggedAddresses": {"lan": "127.0.0.9"},
    "Service": {"ID": "web1", "Service": "web", "Port": 8080, "Tags": ["a"], "Meta": {"v": "1"},
                "Weights": {"Passing": 1, "Warning": 1}},
    "Check": {"CheckID": "web-ttl", "Name": "web", "ServiceID": "web1", "Status": "passing", "Definition": {"TTL": "30s"}},
}
# (method, path, a valid body to mutate)
WRITES: list[tuple[str, str, Any]] = [
    ("PUT", "/v1/catalog/register", REGISTRATION),
    ("PUT", "/v1/catalog/deregister", {"Node": "fuzz-node", "ServiceID": "web1"}),
    ("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "web", "Protocol": "http",
                           "MeshGateway": {"Mode": "local"}, "Meta": {"a": "b"}}),
    ("PUT", "/v1/config", {"Kind": "service-intentions", "Name": "db",
                           "Sources": [{"Name": "web", "Action": "allow", "Precedence": 9}]}),
    ("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"},
                           "MeshGateway": {"Mode": "remote"}}),
    ("PUT", "/v1/connect/intentions/exact?source=web&destination=db", {"Action": "deny", "Description": "x"}),
    ("POST", "/v1/connect/intentions", {"SourceName": "api", "DestinationName": "db", "Action": "allow",
                                        "Meta": {"k": "v"}}),
    ("PUT", "/v1/connect/ca/configuration", {"Provider": "consul", "Config": {"LeafCertTTL": "72h"}}),
    ("PUT", "/v1/agent/check/update/web-ttl?node=fuzz-node", {"Status": "passing", "Output": "ok"}),
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _paths(child, (*prefix, i))
    return found


def _replace(value: Any, path: tuple[Any, ...], junk: Any) -> Any:
    if not path:
        return junk
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = junk
    return copy


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, str, bytes]:
    method, path, valid = draw(st.sampled_from(WRITES))
    shape = draw(st.sampled_from(["mutated", "mutated", "whole", "deep"]))
    if shape == "deep":
        depth = draw(st.integers(min_value=60, max_value=3000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        raw = opener * depth + ("1" if opener != "[" else "") + closer * depth
        return method, path, raw.encode()
    body = draw(JSON_VALUES) if shape == "whole" else _replace(valid, draw(st.sampled_from(_paths(valid))), draw(JSON_VALUES))
    return method, path, json.dumps(body).encode()  # ensure_ascii: surrogates travel as \\udXXX escapes


def _store_index(dc: Datacenter, server: Any) -> int:
    # An error answer carries the index of the whole store (X-Consul-Index over every table).
    r = dc.session.put(server.http + "/v1/catalog/register", data=b"{", timeout=10)
    assert r.status_code == 400, r.text
    return int(r.headers["X-Consul-Index"])


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    datacenter = Datacenter("dc1", f"127.0.{next_block()}", str(tmp_path_factory.mktemp("fuzz")))
    datacenter.start()
    # A node and TTL check to update, so check updates reach the apply path.
    r = datacenter.put(datacenter.leader(), "/v1/catalog/register", REGISTRATION)
    assert r.status_code == 200, r.text
    yield datacenter
    datacenter.stop()


@settings(max_examples=350, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(request=bodies(), on_follower=st.booleans())
def test_no_write_endpoint_answers_5xx_or_half_applies(dc: Datacenter, request: tuple[str, str, bytes],
                                                       on_follower: bool) -> None:
    method, path, raw = request
    server = dc.followers()[0] if on_follower else dc.leader()
    before = _store_index(dc, dc.leader())
    r = dc.session.request(method, server.http + path, data=raw, headers={"Content-Type": "application/json"},
                           timeout=15)
    assert r.status_code < 500, f"{method} {path} with {raw[:300]!r} -> {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        assert r.text.strip(), "a refusal must say why"
        assert "X-Consul-Index" in r.headers
        assert _store_index(dc, dc.leader()) == before, f"refused {method} {path} still changed the store"


def test_servers_still_answer_after_the_fuzzing(dc: Datacenter) -> None:
    for server in dc.servers:
        assert requests.get(server.http + "/v1/status/leader", timeout=5).status_code == 200
    assert dc.put(dc.leader(), "/v1/catalog/register", REGISTRATION).status_code == 200

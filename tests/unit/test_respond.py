"""EncodedOnce: a shared answer is shaped and encoded once per value object and shape."""

from __future__ import annotations

import json

from meshfed.rpc.header import QueryMeta
from meshfed.server.http.respond import EncodedOnce, shared_with_meta


def test_the_same_object_is_encoded_once_per_shape_key() -> None:
    shapes: list[str] = []
    encoded = EncodedOnce()
    value = {"web": ["a"], "db": []}

    def upper(v: dict[str, list[str]]) -> dict[str, list[str]]:
        shapes.append("upper")
        return {k.upper(): t for k, t in v.items()}

    first = encoded.body(value, "", lambda v: v)
    assert all(encoded.body(value, "", lambda v: v) is first for _ in range(50))
    assert json.loads(encoded.body(value, "upper", upper)) == {"WEB": ["a"], "DB": []}
    encoded.body(value, "upper", upper)
    assert shapes == ["upper"] and encoded.hits == 51


def test_an_equal_but_different_object_is_encoded_for_itself() -> None:
    encoded = EncodedOnce()
    a, b = {"x": [1]}, {"x": [1]}
    encoded.body(a, "", lambda v: v)
    encoded.body(b, "", lambda v: v)
    assert encoded.hits == 0


def test_entries_are_bounded_by_count_and_bytes() -> None:
    encoded = EncodedOnce(max_entries=4, max_bytes=4000)
    values = [{"k": "x" * 900} for _ in range(6)]
    for v in values:
        encoded.body(v, "", lambda v: v)
    assert len(encoded._entries) <= 4 and encoded._bytes <= 4000
    encoded.body(values[-1], "", lambda v: v)
    assert encoded.hits == 1  # the newest survived
    big = {"k": "x" * 2000}  # over a quarter of the byte bound: answered, never kept
    encoded.body(big, "", lambda v: v)
    assert all(entry[0] is not big for entry in encoded._entries.values())


def test_shared_with_meta_answers_like_with_meta() -> None:
    response = shared_with_meta({"a": []}, QueryMeta(index=7, known_leader=True))
    assert response.status == 200 and response.content_type == "application/json"
    assert response.headers["X-Consul-Index"] == "7" and json.loads(response.body) == {"a": []}

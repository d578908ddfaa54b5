"""ACL-filtered bodies remembered per content, identity and filter (server/http/filtered_once.py):
the same answer is filtered once per token, a new identity (a policy edit) is never served an
older entry, and memory stays bounded."""

from __future__ import annotations

import json
from typing import Any

from meshfed.fsm.acl import Authorizer, DefaultPolicy, parse_rules
from meshfed.server.acl.filters import catalog_nodes
from meshfed.server.acl.resolver import Identity
from meshfed.server.http.filtered_once import FilteredOnce

BODY = json.dumps([{"Node": "n1"}, {"Node": "n2"}]).encode()


def reader_of(*nodes: str) -> Identity:
    rules = "\n".join(f'node "{node}" {{ policy = "read" }}' for node in nodes)
    return Identity("a", Authorizer.from_rules([parse_rules(rules)], DefaultPolicy.DENY))


def counting(keep: Any) -> tuple[Any, list[int]]:
    calls = [0]

    def counted(identity: Identity, answer: Any) -> tuple[Any, bool]:
        calls[0] += 1
        return keep(identity, answer)

    return counted, calls


def test_the_same_answer_for_the_same_identity_is_filtered_once() -> None:
    cache, n1 = FilteredOnce(), reader_of("n1")
    keep, calls = counting(catalog_nodes)
    first = cache.apply(BODY, n1, keep)
    assert json.loads(first[0]) == [{"Node": "n1"}] and first[1] is True
    assert cache.apply(bytes(bytearray(BODY)), n1, keep) == first  # equal content, another object
    assert calls == [1] and cache.hits == 1


def test_another_identity_or_another_body_is_filtered_afresh() -> None:
    cache, keep_and_calls = FilteredOnce(), counting(catalog_nodes)
    keep, calls = keep_and_calls
    cache.apply(BODY, reader_of("n1"), keep)
    edited = reader_of("n1", "n2")  # what the resolver makes after a policy edit: a new object
    body, removed = cache.apply(BODY, edited, keep)
    assert json.loads(body) == json.loads(BODY) and removed is False
    cache.apply(json.dumps([{"Node": "n3"}]).encode(), edited, keep)
    assert calls == [3] and cache.hits == 0


def test_memory_is_bounded_by_count_and_bytes() -> None:
    n1 = reader_of("n1")
    by_count = FilteredOnce(max_entries=2)
    for i in range(5):
        by_count.apply(json.dumps([{"Node": f"x{i}"}]).encode(), n1, catalog_nodes)
    assert len(by_count._entries) == 2
    big = json.dumps([{"Node": "n1", "Pad": "x" * 1000}]).encode()
    by_bytes = FilteredOnce(max_bytes=4 * len(big) - 1)  # a body over a quarter is not kept
    by_bytes.apply(big, n1, catalog_nodes)
    assert len(by_bytes._entries) == 0

"""Responses with Consul's query-meta headers."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from aiohttp import web

from meshfed.rpc.header import QueryMeta


def meta_headers(meta: QueryMeta) -> dict[str, str]:
    headers = {
        "X-Consul-Index": str(max(1, meta.index)),
        "X-Consul-KnownLeader": "true" if meta.known_leader else "false",
        "X-Consul-LastContact": str(max(0, int(meta.last_contact * 1000))),
        "X-Consul-Query-Backend": "blocking-query",
    }
    if meta.consistency_level:
        headers["X-Consul-Effective-Consistency"] = meta.consistency_level
    if meta.results_filtered:
        headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    return headers


def json_body(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(value, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def with_meta(value: Any, meta: QueryMeta, status: int = 200) -> web.Response:
    return json_body(value, status, meta_headers(meta))


class EncodedOnce:
    """JSON bodies of shared answers, by the identity of the value they encode (issue #13, goal 2).

    A blocking query shared by thousands of waiters (server/requests/shared_results.py, or one
    forwarded call shared by a follower's callers) hands every waiter the same value object; each
    waiter used to shape and encode it again, ~40 µs apiece on one event loop. Keyed by identity
    plus the route's shape key: an entry holds its value, so the id cannot be reused while the
    entry lives, and a shared value is never mutated, so its encoding cannot go stale. Bounded by
    count and by bytes, so a few large answers cannot pin much memory.
    """

    def __init__(self, max_entries: int = 64, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._entries: OrderedDict[tuple[int, Hashable], tuple[Any, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self.hits = 0

    def body(self, value: Any, shape_key: Hashable, shape: Callable[[Any], Any]) -> bytes:
        key = (id(value), shape_key)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is value:
            self.hits += 1
            self._entries.move_to_end(key)
            return entry[1]
        body = json.dumps(shape(value), separators=(",", ":")).encode()
        if len(body) <= self._max_bytes // 4:
            self._put(key, value, body)
        return body

    def _put(self, key: tuple[int, Hashable], value: Any, body: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        self._entries[key] = (value, body)
        self._bytes += len(body)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= len(dropped)


ENCODED = EncodedOnce()


def _as_is(value: Any) -> Any:
    return value


def shared_with_meta(value: Any, meta: QueryMeta, shape_key: Hashable = "",
                     shape: Callable[[Any], Any] = _as_is) -> web.Response:
    """`with_meta(shape(value), meta)` for a value shared with other answers: shaped and encoded
    once per value. `shape_key` names every request parameter `shape` depends on. The caller
    must not change `value` (nor anyone else: it is shared)."""
    return web.Response(body=ENCODED.body(value, shape_key, shape), status=200,
                        content_type="application/json", headers=meta_headers(meta))

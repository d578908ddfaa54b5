"""ACL-filtered answers, remembered per body, token and filter.

With ACLs on, a list answer is filtered after it is encoded (server/http/acl_middleware.py):
decoded, checked row by row and encoded again. A blocking query answered to many waiters holding
the same token did that once per waiter for the same body, and a caller polling an unchanged
1,000-DC gateway list with a narrow token paid ~100 ms per read to get the same answer.

An entry is found by the body's content (its hash, then compared byte for byte: routes build a new
bytes object per answer even when nothing changed), the caller's identity object and the filter.
The resolver makes one identity per secret and a new one whenever the ACL tables change, so a
policy edit or a deleted token can never be answered from an entry made before it: the entry
holds its identity and is used only for that same object. Bounded by count and by bytes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, NamedTuple

from meshfed.server.acl.filters import ResultFilter
from meshfed.server.acl.resolver import Identity


class _Entry(NamedTuple):
    body: bytes
    identity: Identity
    result: bytes
    removed: bool


class FilteredOnce:
    def __init__(self, max_entries: int = 256, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._entries: OrderedDict[tuple[int, int, int, Any], _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self.hits = 0

    def apply(self, body: bytes, identity: Identity, keep: ResultFilter) -> tuple[bytes, bool]:
        """(the body `keep` leaves for `identity`, whether it removed anything)."""
        key = (hash(body), len(body), id(identity), keep)
        entry = self._entries.get(key)
        if entry is not None and entry.identity is identity and entry.body == body:
            self.hits += 1
            self._entries.move_to_end(key)
            return entry.result, entry.removed
        kept, removed = keep(identity, json.loads(body))
        result = json.dumps(kept, separators=(",", ":")).encode() if removed else body
        size = len(body) + (len(result) if removed else 0)
        if size <= self._max_bytes // 4:
            self._put(key, _Entry(body, identity, result, removed), size)
        return result, removed

    def _put(self, key: tuple[int, int, int, Any], entry: _Entry, size: int) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _size(old)
        self._entries[key] = entry
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= _size(dropped)


def _size(entry: _Entry) -> int:
    return len(entry.body) + (len(entry.result) if entry.removed else 0)

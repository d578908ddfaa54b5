"""One run of a read for every identical query at the same store version (issue #13, goal 2).

Ten thousand blocking queries parked on one table all wake on the same change, and each used to
re-run the same read: ten thousand copies of one answer, built one after another on the event
loop. A read named by a share key is run once per store version; every other query with that key
at that version gets the same result object.

The invariant: `StateStore.version` moves with every write and load, quiet ones included, so an
entry whose version equals the current one was computed from exactly the current contents. The
version is read before the read runs: a write that lands in between makes the result newer than
its version says, never older, and the next caller sees a newer version and misses.

Shared results are read-only for everyone who gets them, as the records inside them already are.
Only results of the current version are kept: a miss at a new version drops the others, so the
memory held is one result per key in use, never a history.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

MAX_KEYS = 256  # distinct queries kept at one version; beyond it the oldest is dropped


class SharedResults:
    def __init__(self, version: Callable[[], int], max_keys: int = MAX_KEYS) -> None:
        self._version = version
        self._max_keys = max_keys
        self._entries: dict[Hashable, tuple[int, Any]] = {}
        self._swept = -1  # the version at which entries of older versions were last dropped
        self.hits = 0
        self.misses = 0

    def run(self, key: Hashable, query: Callable[[], T]) -> T:
        version = self._version()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version:
            self.hits += 1
            result: T = entry[1]
            return result
        self.misses += 1
        result = query()
        if version != self._swept:
            self._entries = {k: e for k, e in self._entries.items() if e[0] == version}
            self._swept = version
        elif len(self._entries) >= self._max_keys and key not in self._entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (version, result)
        return result

    def __len__(self) -> int:
        return len(self._entries)

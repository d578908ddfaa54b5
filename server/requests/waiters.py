"""Callers waiting on a key, one future each, resolved together (issue #13, goal 2).

Blocking queries wait for a table to change (watch.py) and forwarded calls for the leader to move
(router.py); either can be ten thousand callers on one key. They used to share one future per key
and wait on it through `asyncio.wait`, which removes the waiter's callback from that future when
it returns: a scan of every other caller's callback, n² to release them all (5 s for 10,000 behind
one follower). Here each caller holds a future of its own in the key's set; resolving a key sets
each one directly, and a caller leaving is one set removal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Waiters(Generic[K, V]):
    def __init__(self) -> None:
        self._by_key: dict[K, set[asyncio.Future[V]]] = {}

    def add(self, keys: Iterable[K]) -> asyncio.Future[V]:
        """A new future, resolved by the next `resolve` of any of `keys`. The caller must
        `discard` it (with the same keys) whatever happens."""
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        for key in keys:
            waiting = self._by_key.get(key)
            if waiting is None:
                waiting = self._by_key[key] = set()
            waiting.add(future)
        return future

    def discard(self, future: asyncio.Future[V], keys: Iterable[K]) -> None:
        for key in keys:
            waiting = self._by_key.get(key)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._by_key[key]

    def resolve(self, key: K, value: V) -> None:
        """Every future now waiting on `key` gets `value`; later `add`s wait for the next one."""
        for future in self._by_key.pop(key, ()):
            if not future.done():
                future.set_result(value)

    def keys(self) -> list[K]:
        return list(self._by_key)

    def count(self) -> int:
        """Futures held (one waiting on two keys counts twice)."""
        return sum(len(waiting) for waiting in self._by_key.values())

    def __bool__(self) -> bool:
        return bool(self._by_key)

"""Wake-ups for blocking queries: one asyncio future per table, shared by every waiter.

The state machine applies on PySyncObj's thread and reports (changed tables, index); the Raft
node's owner forwards that here with `loop.call_soon_threadsafe(hub.notify, ...)`. Waiters grab
the current future of each table they depend on *before* running their query, so a change that
lands between the query and the wait is never missed. A thousand waiters on one table cost a
thousand callbacks on one future: no threads, no polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class WatchHub:
    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[int]] = {}

    def future(self, table: str) -> asyncio.Future[int]:
        future = self._futures.get(table)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._futures[table] = future
        return future

    def futures(self, tables: Iterable[str]) -> list[asyncio.Future[int]]:
        return [self.future(t) for t in tables]

    async def wait_any(self, futures: list[asyncio.Future[int]], timeout: float) -> None:
        """Wait until any of `futures` (taken before the caller's query) fires, or `timeout`."""
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    def notify(self, tables: Iterable[str], index: int) -> None:
        for table in tables:
            future = self._futures.pop(table, None)
            if future is not None and not future.done():
                future.set_result(index)

    def notify_all(self, index: int) -> None:
        """A snapshot restore replaced everything: wake every waiter (they re-run their query)."""
        self.notify(list(self._futures), index)

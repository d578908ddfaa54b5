"""Wake-ups for blocking queries and the server's own watch loops.

The state machine applies on PySyncObj's thread and reports (changed tables, index); the Raft
node's owner forwards that here with `loop.call_soon_threadsafe(hub.notify, ...)`. Two ways to
wait, one rule: take the wait *before* running the query, so a change that lands between the
query and the wait is never missed.

- `futures(tables)` + `wait_any`: one shared asyncio future per table. For the handful of
  long-running loops (peering sessions, the gateway locator, leaf renewal) that also wait on
  futures of their own.
- `ticket(tables)` + `wait_ticket`: one future per waiter, resolved by `notify` directly. For
  blocking queries, which can be ten thousand on one table (waiters.py says why one future each);
  a ticket costs one future and one timer, and a change resolves it with one `set_result`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from meshfed.server.requests.waiters import Waiters


class WatchHub:
    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[int]] = {}
        self._tickets: Waiters[str, int] = Waiters()

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

    def ticket(self, tables: tuple[str, ...]) -> asyncio.Future[int]:
        """A future of the caller's own, resolved by the next change to any of `tables`. The
        caller must `release` it (with the same tables) whatever happens."""
        return self._tickets.add(tables)

    def release(self, ticket: asyncio.Future[int], tables: tuple[str, ...]) -> None:
        self._tickets.discard(ticket, tables)

    async def wait_ticket(self, ticket: asyncio.Future[int], timeout: float) -> None:
        """Until `ticket` is resolved or `timeout` runs out. Cancelling the caller cancels only
        its own ticket, never a future other waiters share."""
        if ticket.done():
            return
        timer = asyncio.get_running_loop().call_later(timeout, _expire, ticket)
        try:
            await ticket
        finally:
            timer.cancel()

    def waiting(self) -> int:
        """Tickets now held, for tests and metrics (a ticket on two tables counts twice)."""
        return self._tickets.count()

    def notify(self, tables: Iterable[str], index: int) -> None:
        for table in tables:
            future = self._futures.pop(table, None)
            if future is not None and not future.done():
                future.set_result(index)
            self._tickets.resolve(table, index)

    def notify_all(self, index: int) -> None:
        """A snapshot restore replaced everything, or the server is closing: wake every waiter
        (they re-run their query)."""
        self.notify({*self._futures, *self._tickets.keys()}, index)


def _expire(ticket: asyncio.Future[int]) -> None:
    if not ticket.done():
        ticket.set_result(0)

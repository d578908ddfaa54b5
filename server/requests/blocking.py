"""The blocking-query engine (Consul's `blockingQuery`, reference/federation.md §3.5).

`min_query_index == 0` runs once. Otherwise the query re-runs whenever a table it depends on
changes, and returns as soon as its index passes `min_query_index`, or when the wait (default
5 min, capped at 10 min, plus up to 1/16 random jitter) runs out, with the unchanged result.
Every response carries index >= 1, known leader and last contact.

A query given a `share` key is run once per store version for every caller with that key
(shared_results.py): the key must name everything the query reads, so that two queries with one
key at one version cannot differ.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from meshfed.rpc.header import DEFAULT_QUERY_TIME, MAX_QUERY_TIME, QueryMeta, RequestHeader
from meshfed.server.endpoints.ports import ReadBarrier
from meshfed.server.requests.shared_results import SharedResults
from meshfed.server.requests.watch import WatchHub

T = TypeVar("T")

JITTER_FRACTION = 16


def wait_time(requested: float, rng: random.Random | None = None) -> float:
    """Clamp a requested wait and add jitter in [0, wait/16), as Consul does."""
    wait = DEFAULT_QUERY_TIME if requested <= 0 else min(requested, MAX_QUERY_TIME)
    return wait + (rng or random).random() * wait / JITTER_FRACTION


class QueryRunner:
    def __init__(
        self,
        raft: ReadBarrier,
        watches: WatchHub,
        on_blocking: Callable[[int], None] | None = None,
        store_version: Callable[[], int] | None = None,
    ) -> None:
        self._raft = raft
        self._watches = watches
        self._on_blocking = on_blocking  # +1 / -1, for the consul_rpc_queries_blocking gauge
        self._closing = False
        # None: every query runs for itself (no store to tell when a result is still current).
        self.shared = SharedResults(store_version) if store_version is not None else None

    def close(self) -> None:
        """Shutdown: every open blocking query returns its current result at once (clients get an
        answer and re-ask another server) instead of a connection cut mid-wait."""
        self._closing = True
        self._watches.notify_all(0)

    def meta(self, index: int, consistency: str = "") -> QueryMeta:
        last_contact = self._raft.last_contact()
        return QueryMeta(
            index=max(1, index),
            known_leader=self._raft.known_leader(),
            last_contact=0.0 if last_contact == float("inf") else last_contact,
            consistency_level=consistency,
        )

    async def run(
        self,
        header: RequestHeader,
        tables: Iterable[str],
        query: Callable[[], tuple[int, T]],
        *,
        wait_for_existence: bool = False,
        share: Hashable | None = None,
    ) -> tuple[QueryMeta, T]:
        """Run `query` under the header's blocking/consistency rules.

        `wait_for_existence`: a missing result (None) does not end a blocking wait even if the
        index moved (Consul's newer FederationState.Get behaviour).
        `share`: a key naming everything `query` reads; callers with the same key at the same store
        version get one result object (read-only for all of them).
        """
        tables = tuple(tables)
        if share is not None and self.shared is not None:
            query = _shared(self.shared, share, query)
        consistency = "consistent" if header.require_consistent else ("stale" if header.allow_stale else "")
        if header.require_consistent:
            await self._raft.barrier()
        if not header.blocking:
            index, value = query()
            return self.meta(index, consistency), value

        deadline = time.monotonic() + wait_time(header.max_query_time)
        if self._on_blocking:
            self._on_blocking(1)
        ticket = self._watches.ticket(tables)  # before the query: no change slips between
        try:
            while True:
                index, value = query()
                exists = value is not None or not wait_for_existence
                if index > header.min_query_index and exists:
                    return self.meta(index, consistency), value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    return self.meta(index, consistency), value
                if ticket.done():
                    # Woken, and the answer has not moved past the caller's index: wait again,
                    # on a new ticket taken before the query re-runs. Taken only now, not on every
                    # wake-up: most woken queries return, and a ticket each was 4 % of the loop.
                    self._watches.release(ticket, tables)
                    ticket = self._watches.ticket(tables)
                    continue
                await self._watches.wait_ticket(ticket, remaining)
                if header.require_consistent:
                    await self._raft.barrier()
        finally:
            self._watches.release(ticket, tables)
            if self._on_blocking:
                self._on_blocking(-1)


def _shared(shared: SharedResults, key: Hashable, query: Callable[[], T]) -> Callable[[], T]:
    return lambda: shared.run(key, query)

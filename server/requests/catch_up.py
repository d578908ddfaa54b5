"""Catching a follower up with its leader before it answers "not here".

The leader acknowledges a write once it has applied it, and tells the followers of the commit a
moment later. A client that creates a token on the leader and uses it at once on a follower can
land in that moment: the follower has not applied the token and would answer `ACL not found`,
although the write was acknowledged (CI saw it; on an idle host, a few of 40 tries). Before a
follower refuses something it does not hold, it waits for one read barrier: a no-op committed
through the log, whose completion here means every write committed before it is applied here.

The invariant kept here: a caller is released only by a barrier that *started after it asked*.
A barrier already out when it asks may have been committed before the write it is looking for,
so it waits for the next one. At most one barrier is out at a time, so a burst of callers (or a
client cycling unknown secrets) costs at most one barrier per round trip, never one per caller.

The leader never waits: what it acknowledged, it had applied. A follower that knows no leader
does not wait either: a barrier could only time out, and the answer would be the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from meshfed.server.endpoints.ports import ReadBarrier
from meshfed.server.raft.types import RaftError
from meshfed.server.requests.waiters import Waiters

log = logging.getLogger(__name__)

# Long enough for a barrier through a loaded leader (p99 is tens of ms); short enough that a
# refusal during an election is not held for the full proposal timeout.
CATCH_UP_TIMEOUT = 2.0


class CatchUp:
    def __init__(self, raft: ReadBarrier, timeout: float = CATCH_UP_TIMEOUT,
                 observe: Callable[[bool], None] | None = None) -> None:
        """`observe(caught_up)` is told of every barrier's outcome (a metric)."""
        self._raft = raft
        self._timeout = timeout
        self._observe = observe
        self._waiters: Waiters[int, bool] = Waiters()
        self._next_round = 0  # the round a caller asking now joins: one that has not started
        self._running: asyncio.Task[None] | None = None
        self.rounds = 0  # barriers proposed (a metric: each is one log entry)
        self.failures = 0

    async def wait(self) -> bool:
        """True once this server has applied everything committed before the call; False when
        that could not be learnt (no leader, the barrier failed or timed out)."""
        if self._raft.is_leader():
            return True
        if not self._raft.known_leader():
            return False
        round_ = self._next_round
        future = self._waiters.add((round_,))
        if self._running is None:
            self._running = asyncio.create_task(self._run())
        try:
            return await future
        finally:
            self._waiters.discard(future, (round_,))

    async def _run(self) -> None:
        try:
            while self._waiters:
                round_ = self._next_round
                self._next_round += 1  # callers from now on need the barrier after this one
                self.rounds += 1
                try:
                    await self._raft.barrier(self._timeout)
                    caught_up = True
                except (RaftError, TimeoutError) as error:
                    self.failures += 1
                    log.warning("could not catch up with the leader before refusing an unknown token: %s", error)
                    caught_up = False
                if self._observe is not None:
                    self._observe(caught_up)
                self._waiters.resolve(round_, caught_up)
        finally:
            self._running = None

"""Generic replicator: keeps one type of primary-owned data copied into this secondary.

Runs on the leader of a secondary (DESIGN §8; reference/federation.md §5.2-5.3). One round:
wait for the token bucket (rate 1/s, burst 5 by default), long-poll the primary with
`MinQueryIndex = last remote index`, diff against local state, apply deletions first, then
updates, paced at `apply_limit` per second, remember the remote index. A failed round resets the
remote index (next round is a full diff), sets the status gauge to 0 and backs off 1 s doubling
to 120 s (+0-10 % jitter). A remote index lower than the last one means the primary was rebuilt:
that round compares content instead of indexes (a full resync).

The delegate owns everything type-specific; `Replicator` owns timing and status.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_BASE = 1.0
BACKOFF_MAX = 120.0
BACKOFF_JITTER = 0.10


def replication_backoff(consecutive_failures: int, rng: random.Random | None = None) -> float:
    """1, 2, 4 ... 64, then 120 s after the 1st, 2nd, 3rd ... failure, plus up to 10 % jitter."""
    if consecutive_failures <= 0:
        return 0.0
    wait = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (consecutive_failures - 1))
    return wait * (1 + (rng or random).random() * BACKOFF_JITTER)


class TokenBucket:
    """Rate limiter for rounds: `rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._updated = clock()

    def delay(self) -> float:
        """Take a token; returns how long to wait before using it (0 when one was available)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass
class Diff(Generic[T]):
    deletions: list[T]
    updates: list[T]


class Delegate(Protocol[T]):
    name: str  # "federation_state", "config_entry", "ca_roots"

    async def fetch_remote(self, min_index: int) -> tuple[int, list[T]]: ...
    def local(self) -> list[T]: ...
    def diff(self, local: Sequence[T], remote: Sequence[T], full: bool) -> Diff[T]: ...
    async def delete_local(self, item: T) -> None: ...
    async def update_local(self, item: T) -> None: ...


@dataclass
class ReplicationStatus:
    name: str
    running: bool = False
    last_remote_index: int = 0
    last_success: float = 0.0  # unix time of the last good round
    last_error: float = 0.0
    last_error_message: str = ""
    consecutive_failures: int = 0
    rounds: int = 0
    applies: int = 0
    in_sync: bool = False

    def lag_seconds(self, now: float) -> float:
        """0 while the last round succeeded (we are long-polling for news), else time since then."""
        if self.in_sync:
            return 0.0
        return now - self.last_success if self.last_success else 0.0


class Replicator(Generic[T]):
    def __init__(
        self,
        delegate: Delegate[T],
        *,
        rate: float = 1.0,
        burst: int = 5,
        apply_limit: int = 100,
        on_fetch: Callable[[Exception | None], None] | None = None,
        on_round: Callable[[ReplicationStatus], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.delegate = delegate
        self.status = ReplicationStatus(delegate.name)
        self._bucket = TokenBucket(rate, burst)
        self._apply_pause = 1.0 / apply_limit if apply_limit > 0 else 0.0
        self._on_fetch = on_fetch or (lambda error: None)
        self._on_round = on_round or (lambda status: None)
        self._wall_clock = wall_clock
        self._rng = rng

    async def run(self) -> None:
        """Rounds until cancelled (the leader routine is cancelled on step-down)."""
        self.status.running = True
        try:
            while True:
                delay = self._bucket.delay()
                if delay:
                    await asyncio.sleep(delay)
                try:
                    await self.round()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed(exc)
                    await asyncio.sleep(replication_backoff(self.status.consecutive_failures, self._rng))
        finally:
            self.status.running = False
            self.status.in_sync = False

    async def round(self) -> None:
        status = self.status
        try:
            remote_index, remote = await self.delegate.fetch_remote(status.last_remote_index)
        except Exception as exc:
            self._on_fetch(exc)
            raise RuntimeError(f"failed to retrieve {self.delegate.name}s: {exc}") from exc
        self._on_fetch(None)
        full = remote_index < status.last_remote_index or status.last_remote_index == 0
        if remote_index < status.last_remote_index:
            log.warning(
                "%s replication: remote index went backwards (%d -> %d), doing a full resync",
                self.delegate.name, status.last_remote_index, remote_index,
            )
        diff = self.delegate.diff(self.delegate.local(), remote, full)
        try:
            for position, item in enumerate(diff.deletions):
                await self._pace(position)
                await self.delegate.delete_local(item)
                status.applies += 1
            for position, item in enumerate(diff.updates):
                await self._pace(position + len(diff.deletions))
                await self.delegate.update_local(item)
                status.applies += 1
        except Exception as exc:
            raise RuntimeError(f"failed to apply local {self.delegate.name} changes: {exc}") from exc
        if status.consecutive_failures:
            log.info("%s replication recovered after %d failed rounds", self.delegate.name, status.consecutive_failures)
        elif status.rounds == 0:
            log.info("%s replication started at remote index %d", self.delegate.name, remote_index)
        if diff.deletions or diff.updates:
            log.debug("%s replication: %d deletions, %d updates at remote index %d", self.delegate.name,
                      len(diff.deletions), len(diff.updates), remote_index)
        status.last_remote_index = remote_index
        status.last_success = self._wall_clock()
        status.consecutive_failures = 0
        status.rounds += 1
        status.in_sync = True
        self._on_round(status)

    async def _pace(self, position: int) -> None:
        if position and self._apply_pause:
            await asyncio.sleep(self._apply_pause)

    def _failed(self, exc: Exception) -> None:
        status = self.status
        status.consecutive_failures += 1
        status.last_error = self._wall_clock()
        status.last_error_message = str(exc)
        status.last_remote_index = 0
        status.in_sync = False
        if status.consecutive_failures in (1, 3) or status.consecutive_failures % 10 == 0:
            log.warning("%s replication failed (%d in a row): %s", self.delegate.name, status.consecutive_failures, exc)
        self._on_round(status)

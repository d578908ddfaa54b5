"""Index-diff replication round: keeps one type of primary-owned data copied into this secondary.

Runs on the leader of a secondary (DESIGN §8; reference/federation.md §5.2-5.3). One round:
long-poll the primary with `MinQueryIndex = last remote index`, diff against local state, apply
deletions first, then updates, paced at `apply_limit` per second, and hand back the remote index.
A remote index lower than the last one means the primary was rebuilt: that round compares content
instead of indexes (a full resync).

The delegate owns everything type-specific; `RoundLoop` (replication/loop.py) owns timing and
status: rounds at 1/s with a burst of 5 by default, and after a failure (which resets the remote
index, so the next round is a full diff) a backoff of 1 s doubling to 120 s, +0-10 % jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from meshfed.replication.loop import Backoff, ReplicationStatus, RoundLoop, Sleep

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_BASE = 1.0
BACKOFF_MAX = 120.0
BACKOFF_JITTER = 0.10
REPLICATION_BACKOFF = Backoff(BACKOFF_BASE, BACKOFF_MAX, BACKOFF_JITTER)
DEFAULT_RATE = 1.0
DEFAULT_BURST = 5


def replication_backoff(consecutive_failures: int, rng: random.Random | None = None) -> float:
    """1, 2, 4 ... 64, then 120 s after the 1st, 2nd, 3rd ... failure, plus up to 10 % jitter."""
    return REPLICATION_BACKOFF.delay(consecutive_failures, rng)


@dataclass
class Diff(Generic[T]):
    deletions: list[T]
    updates: list[T]


class Delegate(Protocol[T]):
    name: str  # "federation_state", "config_entry"

    async def fetch_remote(self, min_index: int) -> tuple[int, list[T]]: ...
    def local(self) -> list[T]: ...
    def diff(self, local: Sequence[T], remote: Sequence[T], full: bool) -> Diff[T]: ...
    async def delete_local(self, item: T) -> None: ...
    async def update_local(self, item: T) -> None: ...


class Replicator(Generic[T]):
    """One delegate's index-diff round, driven by a `RoundLoop`."""

    def __init__(
        self,
        delegate: Delegate[T],
        *,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        apply_limit: int = 100,
        on_fetch: Callable[[Exception | None], None] | None = None,
        on_round: Callable[[ReplicationStatus], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.delegate = delegate
        self._apply_pause = 1.0 / apply_limit if apply_limit > 0 else 0.0
        self._on_fetch = on_fetch or (lambda error: None)
        self._sleep = sleep
        self.loop = RoundLoop(
            delegate.name, self._round, label=f"{delegate.name} replication", backoff=REPLICATION_BACKOFF,
            rate=rate, burst=burst, on_round=on_round, wall_clock=wall_clock, sleep=sleep, rng=rng,
        )
        self.status = self.loop.status

    async def run(self) -> None:
        """Rounds until cancelled (the leader routine is cancelled on step-down)."""
        await self.loop.run()

    async def round(self) -> None:
        """One round with its status bookkeeping, outside the loop's pacing."""
        await self.loop.attempt()

    async def _round(self, status: ReplicationStatus) -> int:
        try:
            remote_index, remote = await self.delegate.fetch_remote(status.last_remote_index)
        except Exception as exc:
            self._on_fetch(exc)
            what = getattr(self.delegate, "what", f"{self.delegate.name}s")
            raise RuntimeError(f"failed to retrieve {what}: {exc}") from exc
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
        if diff.deletions or diff.updates:
            log.debug("%s replication: %d deletions, %d updates at remote index %d", self.delegate.name,
                      len(diff.deletions), len(diff.updates), remote_index)
        return remote_index

    async def _pace(self, position: int) -> None:
        if position and self._apply_pause:
            await self._sleep(self._apply_pause)

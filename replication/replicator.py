"""Index-diff replication round: keeps one type of primary-owned data copied into this secondary.

Runs on the leader of a secondary (DESIGN §8; reference/federation.md §5.2-5.3). One round:
long-poll the primary with `MinQueryIndex = last remote index`, diff against local state, apply
deletions first, then updates, paced at `apply_limit` per second, and hand back the remote index.
A remote index lower than the last one means the primary was rebuilt: that round compares content
instead of indexes (a full resync).

A delegate that also has `fetch_changes(index) -> (remote index, changes or None)` and
`diff_changes(changes) -> Diff` (federation states, issue #13) is asked only for what changed after
the last remote index once it has one; None from it means the primary cannot answer that (its change
log does not reach back, or it was restored), and the round falls back to a full, non-blocking List.

The delegate owns everything type-specific; `RoundLoop` (replication/loop.py) owns timing and
status: rounds at 1/s with a burst of 5 by default, and after a failure (which resets the remote
index, so the next round is a full diff) a backoff of 1 s doubling to 120 s, +0-10 % jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

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
        apply_batch: int = 1,
        on_fetch: Callable[[Exception | None], None] | None = None,
        on_round: Callable[[ReplicationStatus], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.delegate = delegate
        self._apply_pause = 1.0 / apply_limit if apply_limit > 0 else 0.0
        self._apply_batch = max(1, apply_batch)
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
        fetch_changes = getattr(self.delegate, "fetch_changes", None)
        resync = False
        if fetch_changes is not None and status.last_remote_index > 0:
            remote_index, changes = await self._fetch(lambda: fetch_changes(status.last_remote_index))
            if changes is not None:
                diff = self.delegate.diff_changes(changes)  # type: ignore[attr-defined]
                await self._apply(diff, remote_index)
                return remote_index
            # Remote index 0: the primary has no delta for us at all (an older version, a token
            # that may only List); the blocking full List below is then the whole protocol.
            resync = remote_index > 0
        if resync:
            log.info("%s replication: the primary cannot answer a delta since index %d, doing a full resync",
                     self.delegate.name, status.last_remote_index)
            # A full List that does not block: whatever the primary holds now is what we need.
            remote_index, remote = await self._fetch(lambda: self.delegate.fetch_remote(0))
            full = True
        else:
            remote_index, remote = await self._fetch(lambda: self.delegate.fetch_remote(status.last_remote_index))
            full = remote_index < status.last_remote_index or status.last_remote_index == 0
            if remote_index < status.last_remote_index:
                log.warning(
                    "%s replication: remote index went backwards (%d -> %d), doing a full resync",
                    self.delegate.name, status.last_remote_index, remote_index,
                )
        diff = self.delegate.diff(self.delegate.local(), remote, full)
        await self._apply(diff, remote_index)
        return remote_index

    async def _fetch(self, call: Callable[[], Awaitable[tuple[int, Any]]]) -> tuple[int, Any]:
        try:
            answer = await call()
        except Exception as exc:
            self._on_fetch(exc)
            what = getattr(self.delegate, "what", f"{self.delegate.name}s")
            raise RuntimeError(f"failed to retrieve {what}: {exc}") from exc
        self._on_fetch(None)
        return answer

    async def _apply(self, diff: Diff[T], remote_index: int) -> None:
        """Deletions first, then updates, `apply_batch` at a time, paced at `apply_limit` batches
        per second. A delegate with `update_many(items)` writes a batch of updates as one command
        (one log entry: one Raft round trip, one wake-up of the table's watchers); otherwise a
        batch is concurrent proposals, which the Raft layer packs into entries of its own size."""
        update_many = getattr(self.delegate, "update_many", None)
        try:
            position = 0
            for items, action, many in ((diff.deletions, self.delegate.delete_local, None),
                                        (diff.updates, self.delegate.update_local, update_many)):
                for start in range(0, len(items), self._apply_batch):
                    await self._pace(position)
                    position += 1
                    chunk = items[start:start + self._apply_batch]
                    if many is not None and len(chunk) > 1:
                        await many(chunk)
                    else:
                        await asyncio.gather(*(action(item) for item in chunk))
                    self.status.applies += len(chunk)
        except Exception as exc:
            raise RuntimeError(f"failed to apply local {self.delegate.name} changes: {exc}") from exc
        if diff.deletions or diff.updates:
            log.debug("%s replication: %d deletions, %d updates at remote index %d", self.delegate.name,
                      len(diff.deletions), len(diff.updates), remote_index)

    async def _pace(self, position: int) -> None:
        if position and self._apply_pause:
            await self._sleep(self._apply_pause)

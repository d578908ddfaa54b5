"""Mesh-gateway anti-entropy: keep this datacenter's federation state equal to its catalog.

Runs on the leader of every DC (reference/federation.md §6.2). States: *waiting* for a change of
the local catalog's mesh gateways or of our own federation-state row (a blocking wait, no
polling); *debouncing* (at least `sync_interval` between two writes, Consul PR #23196, so a
flapping check cannot drive a hot loop); *syncing* (one upsert, to the local Raft in the primary or
through `FederationState/Apply` to the primary from a secondary); *backing off* after a failed
write (2 s doubling to 256 s). Besides changes, the state is re-asserted at least every
`refresh_interval`, because the primary prunes records that stop being refreshed (DESIGN §8).

The decisions (`desired_state`, `needs_sync`, `debounce_delay`, `failure_backoff`) are pure
functions; one round talks to the server only through the two protocols below, and the shared
`RoundLoop` (replication/loop.py) runs the rounds, backs off and logs failures. It has no token
bucket: the debounce and the blocking wait pace it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from meshfed.fsm.records import CheckServiceNode, FederationState
from meshfed.replication.loop import Backoff, ReplicationStatus, RoundLoop

log = logging.getLogger(__name__)

DEFAULT_SYNC_INTERVAL = 5.0
DEFAULT_REFRESH_INTERVAL = 600.0
BACKOFF_START = 2.0
BACKOFF_MAX = 256.0
ANTI_ENTROPY_BACKOFF = Backoff(BACKOFF_START, BACKOFF_MAX)


def desired_state(datacenter: str, gateways: Sequence[CheckServiceNode]) -> FederationState:
    """What our own row should hold: the catalog's mesh gateways, in catalog order."""
    return FederationState(datacenter=datacenter, mesh_gateways=tuple(gateways))


def needs_sync(current: FederationState | None, desired: FederationState) -> bool:
    """A missing row is always written, so every DC (the primary too) has a record."""
    return current is None or not current.is_same(desired)


def debounce_delay(last_sync: float | None, now: float, interval: float) -> float:
    """Seconds to wait before the next write may happen."""
    if last_sync is None:
        return 0.0
    return max(0.0, last_sync + interval - now)


def failure_backoff(consecutive_failures: int) -> float:
    """2, 4, 8 ... 256 s after the 1st, 2nd, 3rd ... failure in a row (Consul's retryLoopBackoff)."""
    return ANTI_ENTROPY_BACKOFF.delay(consecutive_failures)


class GatewaySource(Protocol):
    def view(self) -> tuple[int, FederationState | None, list[CheckServiceNode]]:
        """(index, our own stored row, catalog mesh gateways); index covers both."""
        ...

    async def wait_change(self, index: int, timeout: float) -> None:
        """Return when the view's index may have moved past `index`, or after `timeout`."""
        ...


class StateSink(Protocol):
    async def upsert(self, state: FederationState) -> None: ...


class FederationStateAntiEntropy:
    def __init__(
        self,
        datacenter: str,
        source: GatewaySource,
        sink: StateSink,
        *,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self._datacenter = datacenter
        self._source = source
        self._sink = sink
        self._sync_interval = sync_interval
        self._refresh_interval = refresh_interval
        self._clock = clock
        # Injected with the clock: a fake clock with real sleeps would make the timing untestable.
        self._sleep = sleep
        self._on_outcome = on_outcome or (lambda outcome: None)
        self.last_sync: float | None = None
        # A new leader that finds the row already right still owes a refresh within the interval.
        self._refresh_base = clock()
        self._loop = RoundLoop(
            "federation_state_anti_entropy", self._round, label="federation state anti-entropy",
            backoff=ANTI_ENTROPY_BACKOFF, on_round=self._report_failure, clock=clock, sleep=sleep,
        )

    @property
    def failures(self) -> int:
        return self._loop.status.consecutive_failures

    @property
    def last_error(self) -> str:
        """The last write error while failing; "" once a write succeeded again."""
        status = self._loop.status
        return status.last_error_message if status.consecutive_failures else ""

    async def run(self) -> None:
        """Run until cancelled (the leader routine is cancelled on step-down)."""
        await self._loop.run()

    async def step(self) -> None:
        """One round; after a failed write, also the backoff sleep."""
        await self._loop.step()

    def _report_failure(self, status: ReplicationStatus) -> None:
        if not status.in_sync:
            self._on_outcome("error")

    async def _round(self, status: ReplicationStatus) -> int:
        """Wait out the debounce, then write our row if it differs or is due a refresh, else block
        until the catalog changes. A failed write raises to the loop, which backs off."""
        delay = debounce_delay(self.last_sync, self._clock(), self._sync_interval)
        if delay > 0:
            await self._sleep(delay)
        index, current, gateways = self._source.view()
        log.debug("anti-entropy round at index %d: %d gateway(s) in the catalog", index, len(gateways))
        desired = desired_state(self._datacenter, gateways)
        since = self.last_sync if self.last_sync is not None else self._refresh_base
        refresh_due = self._clock() - since >= self._refresh_interval
        if needs_sync(current, desired) or refresh_due:
            await self._sink.upsert(desired)
            self.last_sync = self._clock()
            self._on_outcome("synced")
            log.info(
                "federation state anti-entropy synced: %s has %d mesh gateway(s)",
                self._datacenter, len(desired.mesh_gateways),
            )
            return index
        self._on_outcome("unchanged")
        until_refresh = max(0.1, since + self._refresh_interval - self._clock())
        await self._source.wait_change(index, until_refresh)
        return index

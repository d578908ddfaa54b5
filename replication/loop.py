"""The one supervised retry loop under every leader loop that copies or asserts state across DCs.

Consul separates its `Replicator` (timing, status) from the delegates that know a type; meshfed
goes one step further and lets every such loop share that shell: federation-state and
config-entry replication, the secondary CA's root watch, the Connect CA bootstrap and mesh-gateway
anti-entropy. Each supplies one *round* (`Round`); `RoundLoop` owns everything around it.

States of one loop: *pacing* (waiting for a token when a rate is set), *in a round* (the round
runs; it may itself block on a long poll or a catalog change), then either *in sync* (the round
returned a remote index) or *backing off* (the round raised: sleep `Backoff.delay(failures)`,
which is capped exponential with jitter and never overflows however long the outage lasts).

Logging follows one rule for every loop: a failure is logged on the 1st, 3rd and every 10th in a
row (a week-long outage must not flood the log, yet must stay visible), and a recovery is logged
once with the count. Clock, sleep and randomness are injected so all of it runs under fake time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# An exponent past this is far beyond every cap we use (2**30 s is 34 years); capping it keeps
# `base * 2**n` a small float instead of an OverflowError at n = 1024.
MAX_DOUBLINGS = 30
# 1st and 3rd failure, then every 10th.
LOGGED_EARLY_FAILURES = (1, 3)
LOG_EVERY_NTH_FAILURE = 10

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """`base` seconds after the first failure, doubling to `cap`, plus up to `jitter` x the wait."""

    base: float
    cap: float
    jitter: float = 0.0

    def delay(self, consecutive_failures: int, rng: random.Random | None = None) -> float:
        """0 before the first failure; pure apart from the jitter's draw from `rng`."""
        if consecutive_failures <= 0:
            return 0.0
        doublings = min(consecutive_failures - 1, MAX_DOUBLINGS)
        wait = min(self.cap, self.base * 2**doublings)
        if not self.jitter:
            return wait
        return wait * (1 + (rng or random).random() * self.jitter)


def should_log_failure(consecutive_failures: int) -> bool:
    """The 1st, 3rd and every 10th failure in a row."""
    return consecutive_failures in LOGGED_EARLY_FAILURES or consecutive_failures % LOG_EVERY_NTH_FAILURE == 0


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
class ReplicationStatus:
    """What /v1/internal/replication and the replication gauges show for one loop."""

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


# One round: reads `status.last_remote_index` (0 = do not block, compare everything), may count
# `status.applies`, and returns the remote index to block on next (0 to decide again at once).
# Raising marks the round failed; the loop then backs off.
Round = Callable[[ReplicationStatus], Awaitable[int]]


class RoundLoop:
    """Runs one `Round` over and over with pacing, backoff, status, logging and a metric hook.

    `label` names the loop in log lines ("federation_state replication"). `rate=None` means no
    token bucket (the round paces itself, as anti-entropy's debounce does). `on_round` is called
    with the status after every round, good or failed, so gauges follow each change.
    """

    def __init__(
        self,
        name: str,
        round: Round,
        *,
        label: str,
        backoff: Backoff,
        rate: float | None = None,
        burst: int = 1,
        on_round: Callable[[ReplicationStatus], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.status = ReplicationStatus(name)
        self.label = label
        self.backoff = backoff
        self._round = round
        self._rate = rate
        self._burst = burst
        self._bucket: TokenBucket | None = None
        self._on_round = on_round or (lambda status: None)
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rng = rng
        self._retry_in = 0.0

    async def run(self) -> None:
        """Rounds until cancelled (leader routines are cancelled on step-down).

        A fresh start each time: a new leadership term blocks on nothing it learnt in an earlier
        one and has a full burst of tokens."""
        self.status.running = True
        self.status.last_remote_index = 0
        self._bucket = None
        try:
            while True:
                await self.step()
        finally:
            self.status.running = False
            self.status.in_sync = False

    async def run_until_success(self) -> None:
        """Rounds until one succeeds; for a task that only has to happen once (CA bootstrap)."""
        while not await self.step():
            pass

    async def step(self) -> bool:
        """One paced attempt; after a failure, the backoff sleep. True if the round succeeded."""
        if self._rate is not None:
            if self._bucket is None:
                self._bucket = TokenBucket(self._rate, self._burst, self._clock)
            delay = self._bucket.delay()
            if delay:
                await self._sleep(delay)
        try:
            await self.attempt()
        except asyncio.CancelledError:
            raise
        except Exception:
            await self._sleep(self._retry_in)
            return False
        return True

    async def attempt(self) -> None:
        """One round and its bookkeeping, without pacing; re-raises the round's error."""
        try:
            remote_index = await self._round(self.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            raise
        self._succeeded(remote_index)

    def _succeeded(self, remote_index: int) -> None:
        status = self.status
        if status.consecutive_failures:
            log.info("%s recovered after %d failures", self.label, status.consecutive_failures)
        elif status.rounds == 0 and remote_index:
            log.info("%s started at remote index %d", self.label, remote_index)
        status.last_remote_index = remote_index
        status.last_success = self._wall_clock()
        status.consecutive_failures = 0
        status.rounds += 1
        status.in_sync = True
        self._on_round(status)

    def _failed(self, exc: Exception) -> None:
        status = self.status
        status.consecutive_failures += 1
        status.last_error = self._wall_clock()
        status.last_error_message = str(exc)
        # The next round compares everything instead of trusting what the failed one may have
        # half-applied.
        status.last_remote_index = 0
        status.in_sync = False
        self._retry_in = self.backoff.delay(status.consecutive_failures, self._rng)
        if should_log_failure(status.consecutive_failures):
            log.warning("%s failed (%d in a row, retrying in %.0fs): %s",
                        self.label, status.consecutive_failures, self._retry_in, exc)
        self._on_round(status)

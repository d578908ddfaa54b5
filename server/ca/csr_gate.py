"""The leader's gate on leaf signing: Consul's `csr_max_per_second` / `csr_max_concurrent`.

Signing costs the leader a private-key operation per CSR; after a root rotation every proxy of
the DC asks at once. A token bucket (burst = one second's worth) bounds the rate; a concurrency
cap, when configured, replaces it, as in Consul. Over the limit the caller gets Consul's "Rate
limit reached, try again later" (HTTP 429) and retries with backoff. Injected clock: testable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

RATE_LIMITED = "Rate limit reached, try again later"


class CSRGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: float | None = None
        self._last = clock()
        self.in_flight = 0

    def try_acquire(self, per_second: float, max_concurrent: int) -> bool:
        """True when a CSR may be signed now; pair every True with `release()`."""
        if max_concurrent > 0:
            if self.in_flight >= max_concurrent:
                return False
        elif per_second > 0:
            now = self._clock()
            burst = max(1.0, per_second)
            tokens = burst if self._tokens is None else min(burst, self._tokens + (now - self._last) * per_second)
            self._last = now
            if tokens < 1.0:
                self._tokens = tokens
                return False
            self._tokens = tokens - 1.0
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

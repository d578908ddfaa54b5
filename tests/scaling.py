"""Is a piece of work linear in n? For tests that guard against an n² coming back.

Absolute times fail on a loaded host; a ratio between two sizes does not, if it is read with
care: the garbage collector is off while timing (its collections over ever more live objects bend
a linear curve too), each size runs twice, and the least favourable pair is compared. The clock is
the thread's CPU time, not the wall: under the full suite on two cores a 0.5 s run lost to other
processes for part of its wall time read 66x for linear work (CI saw it fail once).
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

SMALL, LARGE = 500, 8000  # 16x: linear work grows ~16x, a scan per item ~256x
LINEAR_BOUND = 64


class Stopwatch:
    seconds = 0.0


@asynccontextmanager
async def timed() -> AsyncIterator[Stopwatch]:
    """Times the block (CPU seconds of this thread, where the event loop runs) with the collector off."""
    watch = Stopwatch()
    gc.disable()
    started = time.thread_time()
    try:
        yield watch
    finally:
        watch.seconds = time.thread_time() - started
        gc.enable()


async def assert_linear(measure: Callable[[int], Awaitable[float]]) -> None:
    small = max([await measure(SMALL), await measure(SMALL)])
    large = min([await measure(LARGE), await measure(LARGE)])
    assert large < small * LINEAR_BOUND, f"{SMALL} items took {small:.4f} s, {LARGE} took {large:.4f} s"

"""The cyclic garbage collector, tuned for a server whose state is a large heap of long-lived
immutable records (issue #13: elections under load).

Python's collector stops every thread while it scans. With CPython's default thresholds, decoding
one 3 MB answer (1,000 DCs of gateways) allocates enough containers to run several collections,
and every few of them is a full one that walks the whole state: measured on this 2-core host,
22 full collections in 30 decodes, up to 0.4 s each. A Raft tick stalled that long sends no
heartbeats (the election timeout is 0.2-0.5 s), so the benchmark's elections came from here.

Two measures, both safe because the records and decoded messages hold no reference cycles
(reference counting frees them the moment they are dropped; the collector only exists for cycles):
- a much higher first threshold, so collections run per ~100,000 container allocations instead
  of 700, and a full collection only after many of them;
- `gc.freeze()` every `FREEZE_EVERY` seconds: what has survived until then (the state store
  and its records, mostly) moves out of the collector's view, so a full collection walks only
  what was allocated since. A frozen object that later becomes part of unreachable cycle is not
  reclaimed; that bounds the cost to cycles alive at a freeze, which the server does not build.

Pauses are observed (`meshfed_gc_pause_seconds` by generation) so an operator can see this
working, or not.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

GEN0_THRESHOLD = 100_000  # container allocations between young collections (CPython: 700)
GEN1_THRESHOLD = 50  # young collections per middle one (CPython: 10)
GEN2_THRESHOLD = 100  # middle collections per full one, with CPython's 25 %-growth rule on top (CPython: 10)
FREEZE_EVERY = 300.0  # seconds
PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GCPauses:
    """Times every collection through `gc.callbacks` (which run on the thread that triggered it)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pauses = Histogram("meshfed_gc_pause_seconds", "Garbage-collector pauses (all threads stopped), by generation",
                                ["generation"], buckets=PAUSE_BUCKETS, registry=registry)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self._started)


def tune(registry: CollectorRegistry) -> GCPauses:
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    pauses = GCPauses(registry)
    gc.callbacks.append(pauses)
    return pauses


async def freeze_periodically(every: float = FREEZE_EVERY) -> None:
    while True:
        await asyncio.sleep(every)
        gc.freeze()

"""How often CPython hands the GIL to another waiting thread, set for the Raft thread's sake.

A server runs three busy threads: the event loop (HTTP, gRPC handlers), the Raft tick thread
(heartbeats, acknowledgements, commits) and, while a snapshot is written, its conversion thread;
gRPC adds its poller. A thread that wakes (a follower's acknowledgement arrived) waits for the
GIL until the holder reaches a switch point, by default up to 5 ms each time. The tick thread's
work is short and latency-bound, so those waits become commit latency, late heartbeats and, when
a snapshot's conversion holds the GIL in 5 ms slices, tick stalls near the election timeout.

At 1 ms (A/B on this 2-core host, alternating runs; docs/benchmarks.md, seventh pass):
- `bench_snapshots`: Raft tick stalls 29 against 48, the longest 0.30 s against 0.36 s, write p99
  during snapshots 111 ms against 151 ms;
- `bench_writes`, four pairs: 64 gRPC writers with a service +14 % (946 against 800 writes/s on
  average), 64 HTTP writers within noise (1,264 against 1,222/s), sequential p50 4.4 against 4.7 ms;
- `bench_waiters`: within noise (every waiter woken, no 5xx, no leadership change).
At 0.5 ms the gRPC gain stayed but 64 HTTP writers lost ~20 %: more switches cost the loop.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.001  # seconds (CPython's default: 0.005)
ENV_VAR = "MESHFED_GIL_SWITCH_INTERVAL"  # benchmarks set 0.005 to measure CPython's default


def tune() -> float:
    """Set the process's switch interval (the environment may override it); returns it."""
    wanted = os.environ.get(ENV_VAR, "")
    try:
        interval = float(wanted) if wanted else SWITCH_INTERVAL
        if not 0 < interval <= 1:
            raise ValueError
    except ValueError:
        log.warning("%s=%r is not a number of seconds in (0, 1]; using %g", ENV_VAR, wanted, SWITCH_INTERVAL)
        interval = SWITCH_INTERVAL
    sys.setswitchinterval(interval)
    return sys.getswitchinterval()

"""Fault scenarios against a real 3-server datacenter: each injects one fault per round while
writers run through every live server, and reports what the durability invariant cares about.

One function per fault, each returning the same JSON-ready record: the fault, rounds, writes
acknowledged, acknowledged writes lost, replicas diverged, and how long clients waited for the
first acknowledged write after the fault (p50/p99/max). The suite runs each scenario for two
rounds (tests/integration/test_faults_short.py); `python -m tests.faults.run` runs the long
versions whose figures docs/reliability.md publishes.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from tests.integration.harness import Datacenter
from tests.integration.workload import Writers, durability_verdict, first_acked_write

# Snapshots every ~40 entries or 2 s, so faults also land during snapshots and journal cuts.
SNAPSHOT_OFTEN = {"raft_snapshot_threshold": 40, "raft_snapshot_interval": "2s"}


def _summary(recoveries: list[float]) -> dict[str, float]:
    ordered = sorted(recoveries)
    if not ordered:
        return {}

    def rank(fraction: float) -> float:  # nearest rank: a value that was really observed
        return round(ordered[max(1, math.ceil(fraction * len(ordered))) - 1], 3)

    return {"recover_p50_s": rank(0.5), "recover_p99_s": rank(0.99), "recover_max_s": round(ordered[-1], 3)}


def _run(dc: Datacenter, fault: str, rounds: int, inject: Callable[[Datacenter, int], float],
         write_seconds: float, rng: random.Random) -> dict[str, Any]:
    dc.start()
    writers = Writers(dc, threads=4, prefix=f"{fault}-").start()
    recoveries = []
    try:
        for round_number in range(rounds):
            time.sleep(write_seconds + rng.uniform(0, 0.5))  # vary where in the snapshot cycle it lands
            recoveries.append(inject(dc, round_number))
    finally:
        acked = writers.stop()
    dc.wait_leader()
    verdict = durability_verdict(dc, acked)
    return {"fault": fault, "rounds": rounds, "acknowledged": len(acked), **verdict, **_summary(recoveries)}


def leader_kill(dc: Datacenter, rounds: int, write_seconds: float = 1.5, seed: int = 1) -> dict[str, Any]:
    """kill -9 of the leader; the client-side recovery is the first write acknowledged after it."""

    def inject(dc: Datacenter, n: int) -> float:
        victim = dc.leader()
        victim.kill()
        recovered = first_acked_write(dc.servers, f"leader-kill-probe-{n}")
        victim.start()
        dc.wait_leader()
        return recovered

    return _run(dc, "kill -9 leader", rounds, inject, write_seconds, random.Random(seed))


def follower_kill(dc: Datacenter, rounds: int, write_seconds: float = 1.5, seed: int = 2) -> dict[str, Any]:
    rng = random.Random(seed)

    def inject(dc: Datacenter, n: int) -> float:
        victim = rng.choice(dc.followers())
        victim.kill()
        recovered = first_acked_write(dc.servers, f"follower-kill-probe-{n}")
        victim.start()
        dc.wait_leader()
        return recovered

    return _run(dc, "kill -9 follower", rounds, inject, write_seconds, rng)


def whole_cluster_kill(dc: Datacenter, rounds: int, write_seconds: float = 2.0, seed: int = 3) -> dict[str, Any]:
    """kill -9 of all servers at once, then a restart; recovery counts from the restart."""

    def inject(dc: Datacenter, n: int) -> float:
        dc.kill_all()
        for server in dc.servers:
            server.start()
        return first_acked_write(dc.servers, f"all-kill-probe-{n}", timeout=60)

    return _run(dc, "kill -9 all servers", rounds, inject, write_seconds, random.Random(seed))


def leader_pause(dc: Datacenter, rounds: int, write_seconds: float = 1.5, pause_seconds: float = 5.0,
                 seed: int = 4) -> dict[str, Any]:
    """SIGSTOP of the leader for `pause_seconds` (a leader cut off from its peers and clients, with
    its sockets still open), then SIGCONT; recovery is the first write acknowledged meanwhile."""

    def inject(dc: Datacenter, n: int) -> float:
        victim = dc.leader()
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGSTOP)
        try:
            others = [s for s in dc.servers if s is not victim]  # a paused process still looks alive
            recovered = first_acked_write(others, f"pause-probe-{n}")
            time.sleep(max(0.0, pause_seconds - recovered))
        finally:
            os.kill(victim.process.pid, signal.SIGCONT)
        dc.wait_leader()
        return recovered

    return _run(dc, "SIGSTOP leader (cut off)", rounds, inject, write_seconds, random.Random(seed))


SCENARIOS = {
    "leader-kill": leader_kill,
    "follower-kill": follower_kill,
    "whole-cluster-kill": whole_cluster_kill,
    "leader-pause": leader_pause,
}

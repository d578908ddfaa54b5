"""Long peering fault run, outside the test suite: `python -m tests.faults.peering [--rounds N]`.

Two peered 3-server clusters (tests/integration/peered.py) on 127.0.216.x (cluster-01, the
acceptor, exports socat) and 127.0.217.x (cluster-02, the dialer). Each round kills -9 the
leader of one side, alternating (acceptor first), and registers `--writes` new socat instances in
cluster-01 starting right after the kill; cluster-02's `?peer=cluster-01` answers are read the
whole time. A round ends when every instance of the round is visible on every live cluster-02
server (or after `--round-timeout`); the killed server is then restarted and caught up before
the next round, so every round starts from three servers.

Prints one JSON line: rounds, instances written, time to re-visibility (from the kill, and from
cluster-01's acknowledgement of the write) p50/p99/max, instances seen late or never, and reads
during the outages that lacked an instance known before it (imports must never empty or shrink).
Exit status 1 when an instance was never seen or an answer lacked one. The suite's short version
is tests/integration/test_peering_failover.py.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from typing import Any

from tests.integration.harness import wait_until
from tests.integration.peered import (
    ImportWatch,
    PeeredClusters,
    imported_nodes,
    new_leader,
    register_instance,
    start_peered,
)

ACCEPTOR_BASE, DIALER_BASE = "127.0.216", "127.0.217"


def _summary(name: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def rank(fraction: float) -> float:  # nearest rank: a value that was really observed
        return round(ordered[max(1, math.ceil(fraction * len(ordered))) - 1], 3)

    return {f"{name}_p50_s": rank(0.5), f"{name}_p99_s": rank(0.99), f"{name}_max_s": round(ordered[-1], 3)}


def _visible_everywhere(pair: PeeredClusters, nodes: set[str]) -> bool:
    return all(nodes <= imported_nodes(s, stale=True) for s in pair.dialer.servers if s.alive())


def run_round(pair: PeeredClusters, number: int, writes: int, timeout: float) -> dict[str, Any]:
    """One leader kill; what it cost in time and whether any answer lacked an instance."""
    side = pair.acceptor if number % 2 == 0 else pair.dialer
    victim = side.leader()
    watched = [s for s in pair.dialer.servers if s is not victim]
    watch = ImportWatch(watched, imported_nodes(watched[0], stale=True), interval=0.1)
    watch.start()
    killed = time.monotonic()
    victim.kill()
    acked: dict[str, float] = {}
    try:
        for _ in range(writes):
            node, at = register_instance(pair, timeout=timeout)
            acked[node] = at
        new_leader(side, victim, timeout=timeout)
        seen: dict[str, float] = {}
        deadline = killed + timeout
        while len(seen) < len(acked) and time.monotonic() < deadline:
            # An instance counts as visible once every watched cluster-02 server answers with it.
            try:
                everywhere = set.intersection(*(imported_nodes(s, stale=True) for s in watched))
            except Exception:  # noqa: BLE001 - a failed read is the watch's to count
                everywhere = set()
            now = time.monotonic()
            for node in everywhere & set(acked):
                seen.setdefault(node, now)
            time.sleep(0.05)
    finally:
        watch.finish()
    victim.start()  # back to three servers before the next round
    side.wait_leader(60)
    wait_until(lambda: _visible_everywhere(pair, set(pair.registered) - (set(acked) - set(seen))), 60,
               interval=0.2, what=f"the restarted {victim.node} caught up")
    return {
        "side": "acceptor" if side is pair.acceptor else "dialer",
        "from_kill": [seen[n] - killed for n in seen],
        "from_ack": [seen[n] - acked[n] for n in seen],
        "late": sorted(set(acked) - set(seen)),
        "incomplete": watch.incomplete,
        "stale_failures": watch.stale_failures,
        "reads": watch.reads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--writes", type=int, default=3, help="new exported instances per round")
    parser.add_argument("--round-timeout", type=float, default=30.0,
                        help="seconds from a kill for the round's instances to show in cluster-02")
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="meshfed-fault-peering-")
    started = time.monotonic()
    rounds: list[dict[str, Any]] = []
    pair = start_peered(root, ACCEPTOR_BASE, DIALER_BASE, config={"peering_stream_timeout": "5s"})
    try:
        for number in range(args.rounds):
            rounds.append(run_round(pair, number, args.writes, args.round_timeout))
        # Never seen: instances written in any round that are still missing a while after the last.
        try:
            wait_until(lambda: _visible_everywhere(pair, set(pair.registered)), args.round_timeout, interval=0.2,
                       what="every instance imported")
        except AssertionError:
            pass
        final = set.intersection(*(imported_nodes(s, stale=True) for s in pair.dialer.servers))
    finally:
        pair.stop()
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)
    never = sorted(set(pair.registered) - final, key=lambda n: int(n[3:]))
    incomplete = [line for r in rounds for line in r["incomplete"]]
    result = {
        "scenario": "peering-leader-kill",
        "rounds": len(rounds),
        "acceptor_kills": sum(r["side"] == "acceptor" for r in rounds),
        "dialer_kills": sum(r["side"] == "dialer" for r in rounds),
        "instances": len(pair.registered),
        **_summary("revisible_from_kill", [v for r in rounds for v in r["from_kill"]]),
        **_summary("revisible_from_ack", [v for r in rounds for v in r["from_ack"]]),
        "late": [n for r in rounds for n in r["late"]],
        "never_seen": never,
        "reads_during_outages": sum(r["reads"] for r in rounds),
        "incomplete_reads": len(incomplete),
        "incomplete_examples": incomplete[:5],
        "stale_read_failures": sum(len(r["stale_failures"]) for r in rounds),
        "seconds": round(time.monotonic() - started, 1),
        **({"data": root} if args.keep_data else {}),
    }
    print(json.dumps(result), flush=True)
    return 1 if never or incomplete else 0


if __name__ == "__main__":
    sys.exit(main())

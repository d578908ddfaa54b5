"""What durable acknowledgements cost: raft_journal_sync = "always" against "interval", same run.

"always" (the default) acknowledges a write once its log entry is synced to disk on a majority;
"interval" once it is in the page cache of a majority, with a sync every second
(server/raft/durability.py). Each mode gets a fresh 3-server datacenter (server/cli/launcher.py)
and the same phases, from bench_writes.py: sequential HTTP writes to the leader (1 writer), then
64 concurrent HTTP writers. The modes alternate over `--rounds` so that a noisy neighbour on this
shared machine hurts both alike; the report keeps every round and the ratio of the medians.

Run from the repository root: python -m tests.bench.bench_sync_modes [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import aiohttp

from .bench_writes import (
    CONCURRENCY,
    REQUEST_TIMEOUT,
    WARMUP_WRITES,
    PhaseResult,
    Writes,
    http_writer,
    measured_phase,
)
from .common import (
    SYNC_MODES_BASES,
    Datacenter,
    emit,
    machine,
    meshfed_datacenter,
    ratio,
    stop_cleanly_on_sigterm,
)

WRITERS = (1, CONCURRENCY)


async def run_phases(datacenter: Datacenter, seconds: float) -> dict[str, Any]:
    leader = datacenter.leader()
    writes = Writes()
    figures: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        url = leader.http + "/v1/catalog/register"
        warm = http_writer(session, url, writes)
        for _ in range(WARMUP_WRITES):
            await warm(PhaseResult())
        for writers in WRITERS:
            figures[f"http_{writers}_writers"] = await measured_phase(
                datacenter, writers, seconds, http_writer(session, url, writes)
            )
    figures["all_servers_alive"] = datacenter.alive()
    return figures


def run_mode(mode: str, seconds: float, keep_data: bool) -> dict[str, Any]:
    with meshfed_datacenter(SYNC_MODES_BASES[mode], keep_data=keep_data, config={"raft_journal_sync": mode}) as dc:
        return asyncio.run(run_phases(dc, seconds))


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase: median over rounds of ops/s, p50 and p99."""
    out: dict[str, Any] = {}
    for phase in rounds[0]:
        if not phase.startswith("http_"):
            continue
        figures = [r[phase] for r in rounds]
        out[phase] = {
            "ops_per_s": statistics.median(f["ops_per_s"] for f in figures),
            "p50_ms": statistics.median(f["latency"]["p50_ms"] for f in figures),
            "p99_ms": statistics.median(f["latency"]["p99_ms"] for f in figures),
            "commands_per_log_entry": statistics.median(f["commands_per_log_entry"] or 0 for f in figures),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="cost of raft_journal_sync=always vs interval (one JSON document)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured phase")
    parser.add_argument("--rounds", type=int, default=2, help="times each mode is measured, alternating")
    parser.add_argument("--keep-data", action="store_true", help="keep data and logs for inspection")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    started = time.monotonic()
    rounds: dict[str, list[dict[str, Any]]] = {"interval": [], "always": []}
    for _ in range(args.rounds):
        for mode in rounds:
            rounds[mode].append(run_mode(mode, args.seconds, args.keep_data))
    medians = {mode: summary(results) for mode, results in rounds.items()}
    cost = {
        phase: {
            "ops_per_s__always_over_interval": ratio(medians["always"][phase]["ops_per_s"],
                                                     medians["interval"][phase]["ops_per_s"]),
            "p50__always_over_interval": ratio(medians["always"][phase]["p50_ms"], medians["interval"][phase]["p50_ms"]),
        }
        for phase in medians["always"]
    }
    emit({
        "benchmark": "sync_modes", "machine": machine(), "phase_seconds": args.seconds, "rounds": rounds,
        "medians": medians, "cost_of_always": cost, "wall_seconds": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    main()

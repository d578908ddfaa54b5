"""Snapshots that cost no leadership (issue #13, goal 3).

Goal: with 1,000 DCs x 4 gateways of state (a 2.5 MB snapshot) and continuous writes, zero
leadership changes across 10 snapshot cycles, and writes barely slower while a snapshot is taken.

Setup: two 3-server datacenters, one after the other, each loaded with the same 1,000 federation
states, then driven by `--writers` concurrent HTTP writers (`PUT /v1/catalog/register`) on the
leader:
- baseline (127.0.224.x): `raft_snapshot_threshold` so large that no snapshot happens in the run;
- snapshots (127.0.225.x): a small threshold (`--threshold`, 300 log entries; a log entry carries a
  batch of writes), so every server
  snapshots every few seconds; the run lasts until each server wrote `--cycles` snapshots.
The baseline runs as long as the snapshot run did. Same machine, same state, same load: the ratio
of write p99 (snapshots / baseline) is what the snapshots cost, and leadership changes should be
zero in both.

Run from the repository root: python -m tests.bench.bench_snapshots [--cycles 10] [--writers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import aiohttp

from meshfed.rpc.client import ConnectionPool

from .bench_federation_scale import FAILED_APPLIES, leadership_changes, load, tick_stalls
from .common import (
    Datacenter,
    emit,
    machine,
    meshfed_datacenter,
    parse_prometheus,
    rate,
    ratio,
    registration,
    stop_cleanly_on_sigterm,
    summarize_seconds,
)

BASELINE_BASE, SNAPSHOTS_BASE = "127.0.224", "127.0.225"
NO_SNAPSHOTS = 2**31 - 1
MAX_RUN_SECONDS = 150.0


async def snapshots_written(session: aiohttp.ClientSession, datacenter: Datacenter) -> dict[str, int]:
    out = {}
    for server in datacenter.servers:
        async with session.get(server.http + "/metrics") as response:
            out[server.node] = int(parse_prometheus(await response.text()).get("meshfed_raft_snapshots_written", 0))
    return out


async def drive(session: aiohttp.ClientSession, datacenter: Datacenter, writers: int,
                until: Any) -> dict[str, Any]:
    """Writers register nodes on the leader until `until()` says stop; every write must succeed
    (a failed write is a finding, counted, not retried)."""
    leader = datacenter.leader()
    numbers = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def writer() -> None:
        while not stop.is_set():
            n = next(numbers)
            body = registration(f"snap-{n}", f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}", "svc")
            started = time.perf_counter()
            try:
                async with session.put(leader.http + "/v1/catalog/register", json=body) as response:
                    await response.read()
                    if response.status != 200:
                        errors.append(f"HTTP {response.status}")
                        continue
            except aiohttp.ClientError as exc:
                errors.append(type(exc).__name__)
                continue
            latencies.append(time.perf_counter() - started)

    async def watch() -> None:
        while not await until():
            await asyncio.sleep(0.5)
        stop.set()

    started = time.monotonic()
    await asyncio.gather(watch(), *(writer() for _ in range(writers)))
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "writes": len(latencies), "writes_per_s": rate(len(latencies), seconds),
            "latency": summarize_seconds(latencies), "errors": len(errors), "error_kinds": sorted(set(errors))[:5]}


async def scenario(datacenter: Datacenter, dcs: int, writers: int, *, cycles: int | None, seconds: float | None) -> dict[str, Any]:
    pool = ConnectionPool()
    try:
        load_seconds = await load(pool, datacenter.leader().rpc_address, 0, dcs)
    finally:
        await pool.close()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        changes_before = await leadership_changes(session, datacenter)
        written_before = await snapshots_written(session, datacenter)
        deadline = time.monotonic() + (seconds if seconds is not None else MAX_RUN_SECONDS)

        async def until() -> bool:
            if time.monotonic() >= deadline:
                return True
            if cycles is None:
                return False
            now = await snapshots_written(session, datacenter)
            return min(now[n] - written_before[n] for n in now) >= cycles

        writes = await drive(session, datacenter, writers, until)
        written_after = await snapshots_written(session, datacenter)
        return {
            "load_seconds": round(load_seconds, 1),
            **writes,
            "snapshots_written": {n: written_after[n] - written_before[n] for n in written_after},
            "leadership_changes": await leadership_changes(session, datacenter) - changes_before,
            "raft_tick_stalls_since_start": await tick_stalls(session, datacenter),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description="meshfed snapshot benchmark (prints one JSON document)")
    parser.add_argument("--dcs", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--threshold", type=int, default=300)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    started = time.monotonic()
    document: dict[str, Any] = {"benchmark": "snapshots", "machine": machine(), "dcs": args.dcs,
                                "threshold_entries": args.threshold}
    with meshfed_datacenter(SNAPSHOTS_BASE, keep_data=args.keep_data,
                            config={"raft_snapshot_threshold": args.threshold}) as datacenter:
        snapshots = asyncio.run(scenario(datacenter, args.dcs, args.writers, cycles=args.cycles, seconds=None))
    with meshfed_datacenter(BASELINE_BASE, keep_data=args.keep_data,
                            config={"raft_snapshot_threshold": NO_SNAPSHOTS}) as datacenter:
        baseline = asyncio.run(scenario(datacenter, args.dcs, args.writers, cycles=None, seconds=snapshots["seconds"]))
    document["verdicts"] = {
        "leadership_changes_with_snapshots": snapshots["leadership_changes"],
        "fewest_snapshot_cycles_per_server": min(snapshots["snapshots_written"].values()),
        "zero_leadership_changes_over_cycles": snapshots["leadership_changes"] == 0
        and min(snapshots["snapshots_written"].values()) >= args.cycles,
        "write_p99_ratio_snapshots_to_baseline": ratio(snapshots["latency"].get("p99_ms"), baseline["latency"].get("p99_ms")),
        "write_max_ratio_snapshots_to_baseline": ratio(snapshots["latency"].get("max_ms"), baseline["latency"].get("max_ms")),
        "writes_per_s_ratio_snapshots_to_baseline": ratio(snapshots["writes_per_s"], baseline["writes_per_s"]),
    }
    document["snapshots"] = snapshots
    document["baseline_no_snapshots"] = baseline
    document["applies_re_sent_during_load"] = len(FAILED_APPLIES)
    document["wall_seconds"] = round(time.monotonic() - started, 1)
    emit(document)


if __name__ == "__main__":
    main()

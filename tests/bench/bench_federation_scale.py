"""A primary holding 1,000 datacenters x 4 mesh gateways (issue #13, goal 1).

Goal: mesh-gateways list p99 < 50 ms, CPU per write proportional to what changed, not to the
table size. Setup: one 3-server datacenter on 127.0.203.x (plain gRPC, no federation: this script
measures the primary's own cost; cross-DC lag is `bench_replication_lag`'s job). Federation states
are written with `FederationState/Apply` over gRPC, as a secondary's anti-entropy does.

Same-run baseline: every figure is measured first with a small table (3 DCs), then again after
loading 1,000 DCs x 4 gateways; the JSON gives both and their ratio.

Figures per table:
- `GET /v1/internal/federation-states/mesh-gateways` on the leader and on a follower (default
  consistency: forwarded to the leader): p50/p99 and bytes;
- CPU per write while long-pollers watch: 8 blocking `mesh-gateways` reads (as gateways hold,
  spread over the 3 servers), then ONE federation-state write that changes one DC; the servers'
  CPU seconds (from /proc) per write, over `--writes` writes; and the time until every poller has
  its new answer.

Run from the repository root: python -m tests.bench.bench_federation_scale [--dcs 1000] [--writes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import aiohttp

from meshfed.fsm.records import FederationState, to_wire
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader

from .bench_replication_lag import gateway_csn
from .common import (
    Datacenter,
    emit,
    machine,
    meshfed_datacenter,
    parse_prometheus,
    process_cpu_seconds,
    ratio,
    stop_cleanly_on_sigterm,
    summarize_seconds,
)

SCALE_MESHFED_BASE = "127.0.203"
LIST_PATH = "/v1/internal/federation-states/mesh-gateways"
POLLERS = 8
LIST_SAMPLES = 30
LOAD_CONCURRENCY = 32


FAILED_APPLIES: list[str] = []


async def apply(pool: ConnectionPool, address: str, state: FederationState) -> None:
    """One write, re-sent (same request id: applied once) if the cluster lost its leader meanwhile;
    the failures are reported, since a lost leadership is itself a finding."""
    header = RequestHeader(request_id=uuid.uuid4().hex)
    for attempt in range(3):
        try:
            _, reply = await pool.call(address, "FederationState/Apply", header,
                                       {"op": "upsert", "state": to_wire(state)}, timeout=30)
        except RPCError as exc:
            FAILED_APPLIES.append(f"{state.datacenter}: {exc}")
            if attempt == 2:
                raise
            continue
        if reply is not True:
            raise RuntimeError(f"apply {state.datacenter}: {reply!r}")
        return


def big_state(n: int, marker: str = "") -> FederationState:
    dc = f"big{n:04d}"
    return FederationState(dc, tuple(gateway_csn(dc, 4 * n + g) for g in range(4)), updated_at=marker)


async def load(pool: ConnectionPool, leader: str, first: int, count: int) -> float:
    started = time.perf_counter()
    queue = list(range(first, first + count))

    async def worker() -> None:
        while queue:
            await apply(pool, leader, big_state(queue.pop()))

    await asyncio.gather(*(worker() for _ in range(LOAD_CONCURRENCY)))
    return time.perf_counter() - started


async def list_latency(session: aiohttp.ClientSession, http: str) -> dict[str, Any]:
    times: list[float] = []
    size = 0
    for _ in range(LIST_SAMPLES):
        started = time.perf_counter()
        async with session.get(http + LIST_PATH) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{LIST_PATH}: HTTP {response.status} {body[:200]!r}")
        times.append(time.perf_counter() - started)
        size = len(body)
    return {**summarize_seconds(times), "bytes": size}


async def poll_once(session: aiohttp.ClientSession, http: str, index: int) -> tuple[int, float]:
    async with session.get(f"{http}{LIST_PATH}?index={index}&wait=30s") as response:
        await response.read()
        return int(response.headers["X-Consul-Index"]), time.perf_counter()


async def tick_stalls(session: aiohttp.ClientSession, datacenter: Datacenter) -> dict[str, float]:
    """Raft ticks that ran late (meshfed_raft_tick_stalls), summed over the servers, and the longest."""
    count, longest = 0.0, 0.0
    for server in datacenter.servers:
        async with session.get(server.http + "/metrics") as response:
            metrics = parse_prometheus(await response.text())
        count += metrics.get("meshfed_raft_tick_stalls", 0.0)
        longest = max(longest, metrics.get("meshfed_raft_longest_tick_seconds", 0.0))
    return {"count": int(count), "longest_seconds": round(longest, 3)}


async def leadership_changes(session: aiohttp.ClientSession, datacenter: Datacenter) -> int:
    total = 0.0
    for server in datacenter.servers:
        async with session.get(server.http + "/metrics") as response:
            total += parse_prometheus(await response.text()).get("meshfed_raft_leadership_changes_total", 0.0)
    return int(total)


def servers_cpu(datacenter: Datacenter) -> dict[str, float]:
    return {s.node: process_cpu_seconds(s.process.pid) or 0.0 for s in datacenter.servers if s.process}


async def cpu_per_write(session: aiohttp.ClientSession, datacenter: Datacenter, pool: ConnectionPool, leader: str,
                        writes: int) -> dict[str, Any]:
    """`writes` times: park POLLERS long-polls, change one DC, wait for every poller's answer."""
    async with session.get(datacenter.servers[0].http + LIST_PATH) as response:
        index = int(response.headers["X-Consul-Index"])
    cpu_before = servers_cpu(datacenter)
    wake: list[float] = []
    poll_errors = 0
    started = time.perf_counter()
    for i in range(writes):
        polls = [asyncio.create_task(poll_once(session, datacenter.servers[p % 3].http, index)) for p in range(POLLERS)]
        await asyncio.sleep(0.2)  # let them park: a poller that arrives late answers at once and skews nothing
        written = time.perf_counter()
        await apply(pool, leader, big_state(9999, marker=f"2026-01-01T00:00:00.{i:06d}Z"))
        results = await asyncio.gather(*polls, return_exceptions=True)
        answers = [r for r in results if not isinstance(r, BaseException)]
        poll_errors += len(results) - len(answers)
        wake.extend(arrived - written for _, arrived in answers)
        index = max([index, *(i for i, _ in answers)])
    wall = time.perf_counter() - started
    cpu_after = servers_cpu(datacenter)
    used = {node: round(cpu_after[node] - cpu_before[node], 3) for node in cpu_before}
    return {
        "writes": writes,
        "pollers": POLLERS,
        "cpu_seconds_per_write_all_servers": round(sum(used.values()) / writes, 4),
        "cpu_seconds_per_write_by_server": {n: round(v / writes, 4) for n, v in used.items()},
        "pollers_answered_after_write": summarize_seconds(wake),
        "poller_errors": poll_errors,
        "wall_seconds": round(wall, 2),
    }


async def measure(datacenter: Datacenter, pool: ConnectionPool, leader_rpc: str, writes: int) -> dict[str, Any]:
    leader = datacenter.leader()
    follower = datacenter.followers()[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        changes = await leadership_changes(session, datacenter)
        result = {
            "list_on_leader": await list_latency(session, leader.http),
            "list_on_follower": await list_latency(session, follower.http),
            "writes_with_long_pollers": await cpu_per_write(session, datacenter, pool, leader_rpc, writes),
            "rss_kib": {n: m.get("rss_kib") for n, m in datacenter.memory().items()},
        }
        result["leadership_changes"] = await leadership_changes(session, datacenter) - changes
        result["raft_tick_stalls_since_start"] = await tick_stalls(session, datacenter)
        return result


async def scenario(datacenter: Datacenter, dcs: int, writes: int) -> dict[str, Any]:
    leader_rpc = datacenter.leader().rpc_address
    pool = ConnectionPool()
    try:
        await load(pool, leader_rpc, 0, 3)
        small = await measure(datacenter, pool, leader_rpc, writes)
        load_seconds = await load(pool, leader_rpc, 3, dcs - 3)
        big = await measure(datacenter, pool, leader_rpc, writes)
    finally:
        await pool.close()
    return {"small_table_3_dcs": small, f"table_{dcs}_dcs_x_4_gateways": {**big, "load_seconds": round(load_seconds, 2)},
            "leader_unchanged": datacenter.leader().rpc_address == leader_rpc, "applies_re_sent": FAILED_APPLIES[:20],
            "applies_re_sent_count": len(FAILED_APPLIES)}


def ratios(result: dict[str, Any], dcs: int) -> dict[str, Any]:
    small, big = result["small_table_3_dcs"], result[f"table_{dcs}_dcs_x_4_gateways"]
    cpu = "cpu_seconds_per_write_all_servers"
    return {
        "list_on_leader_p99_ms": big["list_on_leader"]["p99_ms"],
        "list_on_leader_p99_under_50ms": big["list_on_leader"]["p99_ms"] < 50,
        "list_on_leader_p50_ratio_big_to_small": ratio(big["list_on_leader"]["p50_ms"], small["list_on_leader"]["p50_ms"]),
        "list_on_follower_p99_ms": big["list_on_follower"]["p99_ms"],
        "cpu_per_write_ratio_big_to_small": ratio(big["writes_with_long_pollers"][cpu], small["writes_with_long_pollers"][cpu]),
        "poller_answer_p99_ratio_big_to_small": ratio(
            big["writes_with_long_pollers"]["pollers_answered_after_write"]["p99_ms"],
            small["writes_with_long_pollers"]["pollers_answered_after_write"]["p99_ms"],
        ),
    }


GC_TUNING_ENV = "MESHFED_GC_TUNING"


def run(args: argparse.Namespace, gc_tuning: bool) -> dict[str, Any]:
    os.environ[GC_TUNING_ENV] = "1" if gc_tuning else "0"  # inherited by the servers started next
    try:
        with meshfed_datacenter(SCALE_MESHFED_BASE, keep_data=args.keep_data) as datacenter:
            return asyncio.run(scenario(datacenter, args.dcs, args.writes))
    finally:
        os.environ.pop(GC_TUNING_ENV, None)


def main() -> None:
    parser = argparse.ArgumentParser(description="meshfed large-federation benchmark (prints one JSON document)")
    parser.add_argument("--dcs", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--compare-gc", action="store_true",
                        help="also run the whole scenario first with the servers' collector tuning off (server/gc_tuning.py)")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    started = time.monotonic()
    document: dict[str, Any] = {"benchmark": "federation_scale", "machine": machine()}
    if args.compare_gc:
        untuned = run(args, gc_tuning=False)
        document["gc_tuning_off"] = {"verdicts": ratios(untuned, args.dcs), "meshfed": untuned}
    result = run(args, gc_tuning=True)
    document["verdicts"] = ratios(result, args.dcs)
    document["meshfed"] = result
    document["wall_seconds"] = round(time.monotonic() - started, 1)
    emit(document)


if __name__ == "__main__":
    main()

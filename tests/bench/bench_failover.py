"""Leader failover: kill -9 of the leader, time to the first acknowledged write (issue #13 goal 5).

Setup: one 3-server datacenter with the default Raft timings (127.0.218.x). Writers send
`PUT /v1/catalog/register` (a node with a service) to the two servers that will survive, one new
write every `--interval` seconds whether or not earlier ones answered, so a write stuck on the dead
leader never holds back the next. Each round kills the leader with SIGKILL, records the first
write that was *sent after the kill* and acknowledged, then restarts the dead server and waits
until all three agree on a leader and the restarted one has applied what the others have.

What a round reports, from the kill: `first_ack` (the first write sent after the kill is
acknowledged: what a client sees) and `new_leader` (when a survivor first names a new leader).
The baseline, in the same run, is the same writers' ack latency with every server up, and the
configured election timeout bounds: failover cannot beat one election timeout after the last
heartbeat, so `first_ack / election_max` says how much the rest of the path adds.

`--compare-keepalive` first runs the same rounds with the servers' follower keepalives off
(`MESHFED_RAFT_KEEPALIVE=0`, server/raft/syncobj.py), so the before/after pair comes from one run.

    python -m tests.bench.bench_failover [--rounds 20] [--interval 0.02] [--compare-keepalive] [--keep-data]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from meshfed.server.cli.launcher import ServerProcess, get_json, wait_for_leader
from meshfed.server.raft.types import RaftTimings

from .common import (
    Datacenter,
    emit,
    machine,
    meshfed_datacenter,
    ratio,
    registration,
    stop_cleanly_on_sigterm,
    summarize_seconds,
)

BASE = "127.0.218"  # no test or other benchmark uses this block
WRITE_TIMEOUT = 5.0
CATCH_UP_TIMEOUT = 30.0


@dataclass
class Writes:
    """Every write's (sent, acked or None, status), on the monotonic clock."""

    sent: list[tuple[float, float | None, int]] = field(default_factory=list)
    seq: int = 0

    def first_ack_after(self, t0: float) -> float | None:
        acked = [ack for sent, ack, status in self.sent if sent >= t0 and ack is not None and status == 200]
        return min(acked) - t0 if acked else None

    def latencies(self, since: float, until: float) -> list[float]:
        return [ack - sent for sent, ack, status in self.sent
                if since <= sent < until and ack is not None and status == 200]


async def write_once(session: aiohttp.ClientSession, server: ServerProcess, writes: Writes) -> None:
    writes.seq += 1
    node = f"failover-{writes.seq}"
    sent = time.monotonic()
    try:
        async with session.put(server.http + "/v1/catalog/register",
                               json=registration(node, "10.0.0.1", service=f"svc-{writes.seq % 50}"),
                               timeout=aiohttp.ClientTimeout(total=WRITE_TIMEOUT)) as response:
            await response.read()
            writes.sent.append((sent, time.monotonic(), response.status))
    except (aiohttp.ClientError, TimeoutError, OSError):
        writes.sent.append((sent, None, 0))


async def writer(session: aiohttp.ClientSession, targets: list[ServerProcess], writes: Writes,
                 interval: float, stop: asyncio.Event) -> None:
    tasks: set[asyncio.Task[None]] = set()
    turn = 0
    while not stop.is_set():
        task = asyncio.create_task(write_once(session, targets[turn % len(targets)], writes))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        turn += 1
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
    if tasks:
        await asyncio.wait(tasks)


def leader_named_by(server: ServerProcess) -> str:
    try:
        status, _, leader = get_json(server.http + "/v1/status/leader", timeout=1)
    except (OSError, ValueError):
        return ""
    return leader if status == 200 and leader else ""


def raft_term(server: ServerProcess) -> int:
    """The highest term the cluster reports (autopilot health, answered by the leader): how many
    elections a failover took is the jump across it (1 = the first election won)."""
    try:
        status, _, health = get_json(server.http + "/v1/operator/autopilot/health", timeout=2)
    except (OSError, ValueError):
        return -1
    servers = health.get("Servers") if isinstance(health, dict) else None
    return max((int(s.get("LastTerm") or 0) for s in servers or []), default=-1) if status in (200, 429) else -1


def applied_index(server: ServerProcess) -> int:
    try:
        _, headers, _ = get_json(server.http + "/v1/catalog/nodes?stale", timeout=2)
    except (OSError, ValueError):
        return -1
    return int(headers.get("X-Consul-Index", -1))


async def wait_new_leader(survivors: list[ServerProcess], old: str, t0: float) -> float | None:
    while time.monotonic() - t0 < CATCH_UP_TIMEOUT:
        for server in survivors:
            named = await asyncio.to_thread(leader_named_by, server)
            if named and named != old:
                return time.monotonic() - t0
        await asyncio.sleep(0.01)
    return None


async def caught_up(dc: Datacenter) -> None:
    """All three agree on a leader and the restarted one has applied as far as the leader had."""
    await asyncio.to_thread(wait_for_leader, dc.servers, CATCH_UP_TIMEOUT)
    leader = dc.leader()
    target = await asyncio.to_thread(applied_index, leader)
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while time.monotonic() < deadline:
        indexes = [await asyncio.to_thread(applied_index, s) for s in dc.servers]
        if min(indexes) >= target:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"servers did not catch up to index {target}")


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    baseline: list[float] = []
    with meshfed_datacenter(BASE, keep_data=args.keep_data) as dc:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for number in range(args.rounds):
                await caught_up(dc)
                leader = dc.leader()
                survivors = [s for s in dc.servers if s is not leader]
                term_before = await asyncio.to_thread(raft_term, leader)
                writes, stop = Writes(), asyncio.Event()
                task = asyncio.create_task(writer(session, survivors, writes, args.interval, stop))
                await asyncio.sleep(args.steady)  # the baseline: every server up
                t0 = time.monotonic()
                await asyncio.to_thread(leader.kill)
                elected = await wait_new_leader(survivors, leader.rpc_address, t0)
                while writes.first_ack_after(t0) is None and time.monotonic() - t0 < CATCH_UP_TIMEOUT:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)
                stop.set()
                await task
                baseline += writes.latencies(0.0, t0 - 0.05)
                term_after = await asyncio.to_thread(raft_term, survivors[0])
                failed = sum(1 for sent, ack, status in writes.sent if sent >= t0 and status != 200)
                rounds.append({"round": number + 1, "killed": leader.node,
                               "new_leader_s": None if elected is None else round(elected, 3),
                               "first_ack_s": _round(writes.first_ack_after(t0)),
                               "writes_failed_after_kill": failed,
                               "elections": term_after - term_before if min(term_before, term_after) > 0 else None})
                print(f"bench_failover: round {number + 1}: {rounds[-1]}", file=sys.stderr, flush=True)
                leader.start()
    first = [r["first_ack_s"] for r in rounds if r["first_ack_s"] is not None]
    elected_at = [r["new_leader_s"] for r in rounds if r["new_leader_s"] is not None]
    timings = RaftTimings()
    first_summary = summarize_seconds(first)
    return {
        "rounds": len(rounds),
        "rounds_without_ack": sum(1 for r in rounds if r["first_ack_s"] is None),
        "election_timeout_s": [timings.election_min, timings.election_max],
        "first_ack_after_kill": first_summary,
        "new_leader_named_after_kill": summarize_seconds(elected_at),
        "baseline_write_ack_all_up": summarize_seconds(baseline),
        "rounds_by_elections": {str(k): sum(1 for r in rounds if r["elections"] == k)
                                for k in sorted({r["elections"] for r in rounds}, key=str)},
        "first_ack_p99_over_election_max": ratio(first_summary.get("p99_ms"), timings.election_max * 1000),
        "goal_first_ack_p99_under_1s": bool(first) and first_summary["p99_ms"] < 1000 and len(first) == len(rounds),
        "per_round": rounds,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    document: dict[str, Any] = {"benchmark": "failover", "machine": machine()}
    if args.compare_keepalive:
        os.environ["MESHFED_RAFT_KEEPALIVE"] = "0"  # the servers inherit the environment
        document["keepalive_off"] = await scenario(args)
        os.environ.pop("MESHFED_RAFT_KEEPALIVE")
    document["keepalive_on"] = await scenario(args)
    return document


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between writes")
    parser.add_argument("--steady", type=float, default=1.0, help="seconds of baseline writes before each kill")
    parser.add_argument("--compare-keepalive", action="store_true",
                        help="first run the rounds with follower keepalives off")
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    emit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()

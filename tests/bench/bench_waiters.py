"""10,000 blocking waiters, then ONE write (issue #13, goal 2), with and without shared forwarding.

Goal: with 10,000 `GET /v1/catalog/services?index=N&wait=60s` parked on one server or spread over
three (default consistency), every waiter is woken, wake p99 < 250 ms, the write's ack < 10x its
no-waiter baseline, zero 5xx, zero leadership changes.

With default consistency a follower forwards every blocking read to the leader. Followers now
share one leader call among identical reads (server/requests/coalesce.py); the servers read
MESHFED_COALESCE_FORWARDED_QUERIES at start, so this script runs each follower scenario twice on
fresh datacenters, sharing off ("before") and on ("after"), in the same run.

Same-run baseline: the same write with nobody waiting (ack p50/p99, on the first datacenter).
A round reuses bench_blocking_fanout's pieces (the separate writer process, the waiter, the
leadership counter); what differs is how "all parked" is seen: a shared call parks ONE query on
the leader for many callers, so the count is the leader-side blocking gauge minus the followers'
upstream calls plus the followers' waiting callers.

The waiters run in one client process. By default each is a bare asyncio Protocol that stamps the
first byte of its answer (raw_waiters.py); `--client aiohttp` uses aiohttp's client instead, whose
own ~0.1 ms per answer on one loop adds up to a second with 10,000 waiters, so its wake figures
are an upper bound of the servers' part.

Run from the repository root: python -m tests.bench.bench_waiters [--waiters 10000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import aiohttp

from meshfed.server.cli.launcher import HTTP_PORT, ServerProcess

from .bench_blocking_fanout import (
    Rounds,
    Writer,
    baseline_no_waiters,
    leadership_changes,
    memory_delta,
    services_index,
)
from .common import (
    FANOUT_MESHFED_BASE,
    Datacenter,
    emit,
    machine,
    meshfed_datacenter,
    parse_prometheus,
    ratio,
    servers_cpu_seconds,
    stop_cleanly_on_sigterm,
    summarize_seconds,
)
from .http_floor import floor
from .raw_waiters import open_waiters

WAIT = "60s"
PARK_TIMEOUT = 60.0
WAKE_TIMEOUT = 30.0
SETTLE_SECONDS = 1.0
COALESCE_ENV = "MESHFED_COALESCE_FORWARDED_QUERIES"


async def waiter(session: aiohttp.ClientSession, url: str, answers: list[tuple[float, str, int]],
                 errors: dict[str, int]) -> None:
    """One blocking read: when its answer arrived, its status and index; error texts are counted
    (the first 80 characters), so a 5xx says what it was."""
    try:
        async with session.get(url) as response:
            arrived = time.monotonic()
            body = await response.read()
            answers.append((arrived, str(response.status), int(response.headers.get("X-Consul-Index", "0"))))
            if response.status != 200:
                text = f"{response.status} {body[:80].decode(errors='replace')}"
                errors[text] = errors.get(text, 0) + 1
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        answers.append((time.monotonic(), type(exc).__name__, 0))


async def parked(control: aiohttp.ClientSession, servers: list[ServerProcess]) -> dict[str, int]:
    """Client requests parked on the cluster, and the leader-side queries and calls that hold them."""
    totals = {"blocking": 0.0, "callers": 0.0, "upstream": 0.0}
    for server in servers:
        async with control.get(server.http + "/metrics") as response:
            samples = parse_prometheus(await response.text())
        totals["blocking"] += samples.get("consul_rpc_queries_blocking", 0.0)
        totals["callers"] += samples.get("meshfed_rpc_forwarded_blocking_callers", 0.0)
        totals["upstream"] += samples.get("meshfed_rpc_forwarded_blocking_upstream", 0.0)
    counts = {k: int(v) for k, v in totals.items()}
    counts["clients"] = counts["blocking"] - counts["upstream"] + counts["callers"]
    return counts


async def waiters_round(
    datacenter: Datacenter, targets: list[ServerProcess], waiters: int, rounds: Rounds, writer: Writer,
    client: str = "raw",
) -> dict[str, Any]:
    leader = datacenter.leader()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session, \
            aiohttp.ClientSession() as control:
        index = await services_index(control, leader)
        changes_before = await leadership_changes(control, datacenter.servers)
        memory_before = datacenter.memory()
        path = f"/v1/catalog/services?index={index}&wait={WAIT}"
        answers: list[tuple[float, str, int]] = []
        errors: dict[str, int] = {}
        started = time.monotonic()
        if client == "raw":
            opening = asyncio.create_task(
                open_waiters([(t.address, HTTP_PORT) for t in targets], path, waiters))
            tasks = [opening]
        else:
            tasks = [
                asyncio.create_task(waiter(session, targets[i % len(targets)].http + path, answers, errors))
                for i in range(waiters)
            ]
        seen: dict[str, int] = {}
        while time.monotonic() - started < PARK_TIMEOUT:
            seen = await parked(control, datacenter.servers)
            if seen["clients"] >= waiters:
                break
            await asyncio.sleep(0.1)
        park_seconds = time.monotonic() - started
        await asyncio.sleep(SETTLE_SECONDS)
        seen = await parked(control, datacenter.servers)
        memory_parked = datacenter.memory()
        if client == "raw":
            tasks = list(await opening)
        answered_before_write = sum(1 for t in tasks if t.done()) if client == "raw" else len(answers)

        cpu_before = servers_cpu_seconds(datacenter.servers)
        sent, acknowledged, write_error = await writer.write(leader, rounds.write_body())
        done, pending = await asyncio.wait(tasks, timeout=WAKE_TIMEOUT)
        cpu_wake = servers_cpu_seconds(datacenter.servers) - cpu_before
        if client == "raw":
            for future in done:
                answer = future.result()
                answers.append((answer.arrived, answer.status, answer.index))
                if answer.status != "200":
                    text = f"{answer.status} {answer.text}"
                    errors[text] = errors.get(text, 0) + 1
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        changes = await leadership_changes(control, datacenter.servers) - changes_before

    woken = [t for t, status, answer_index in answers if status == "200" and answer_index > index]
    statuses: dict[str, int] = {}
    for _, status, answer_index in answers:
        if status != "200" or answer_index <= index:
            label = status if status != "200" else "200 without a newer index"
            statuses[label] = statuses.get(label, 0) + 1
    return {
        "waiters": waiters,
        "seconds_to_park": round(park_seconds, 2),
        "parked_seen": seen,
        "answered_before_write": answered_before_write,
        "write_ack_ms": round((acknowledged - sent) * 1000, 3),
        "write_error": write_error,
        "woken": len(woken),
        "http_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "other_answers": statuses,
        "error_texts": errors,
        "not_answered": len(pending),
        "wake_after_send": summarize_seconds([t - sent for t in woken]),
        # CPU of all three servers from the write to the last answer, per woken waiter: steadier
        # than wall-clock figures on a shared host (clock ticks of 10 ms: read it over 10,000).
        "servers_cpu_us_per_woken": round(cpu_wake / max(1, len(woken)) * 1e6, 1),
        "leadership_changes": changes,
        "rss_kib_delta_parked": memory_delta(memory_before, memory_parked),
    }


SCENARIOS = {
    # name: (targets, sharing on?)
    "all_on_leader": ("leader", True),
    "all_on_one_follower_unshared": ("follower", False),
    "all_on_one_follower_shared": ("follower", True),
    "spread_over_3_unshared": ("all", False),
    "spread_over_3_shared": ("all", True),
}


def run(waiters: int, rounds: int, keep_data: bool, only: list[str], client: str = "raw",
        floors: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if floors and client == "raw":
        # The same client against bare servers: what answering this many parked requests costs
        # with no meshfed in the way (http_floor.py).
        results["floor"] = {kind: floor(kind, waiters) for kind in ("aiohttp", "asyncio")}
    writer = Writer()
    try:
        for name, (where, shared) in SCENARIOS.items():
            if only and name not in only:
                continue
            os.environ[COALESCE_ENV] = "1" if shared else "0"  # inherited by the servers started next
            with meshfed_datacenter(FANOUT_MESHFED_BASE, keep_data=keep_data) as datacenter:
                writes = Rounds()
                if "baseline_write_no_waiters" not in results:
                    results["baseline_write_no_waiters"] = asyncio.run(baseline_no_waiters(datacenter, writes, writer))
                leader = datacenter.leader()
                targets = {"leader": [leader], "follower": datacenter.followers()[:1], "all": datacenter.servers}[where]
                results[name] = {
                    "targets": [t.node for t in targets],
                    "sharing": shared,
                    "rounds": [asyncio.run(waiters_round(datacenter, targets, waiters, writes, writer, client)) for _ in range(rounds)],
                    "all_servers_alive": datacenter.alive(),
                }
    finally:
        os.environ.pop(COALESCE_ENV, None)
        writer.close()
    return results


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's bars per scenario (worst round), against the same-run no-waiter baseline."""
    base = results.get("baseline_write_no_waiters", {}).get("ack", {}).get("p50_ms")
    out: dict[str, Any] = {"baseline_ack_p50_ms": base}
    floors = {kind: r["wake_after_send"].get("p99_ms") for kind, r in results.get("floor", {}).items()}
    if floors:
        out["floor_wake_p99_ms"] = floors
    for name in SCENARIOS:
        if name not in results:
            continue
        rounds = results[name]["rounds"]
        worst_ack = max(r["write_ack_ms"] for r in rounds)
        worst_p99 = max(r["wake_after_send"].get("p99_ms", float("inf")) for r in rounds)
        out[name] = {
            "all_woken": all(r["woken"] == r["waiters"] for r in rounds),
            "wake_p99_ms": worst_p99,
            "wake_p99_under_250ms": worst_p99 < 250,
            "wake_p99_ratio_to_aiohttp_floor": ratio(worst_p99, floors.get("aiohttp")),
            "ack_ratio_to_baseline": ratio(worst_ack, base),
            "ack_under_10x": bool(base) and worst_ack < 10 * base,
            "http_5xx": sum(r["http_5xx"] for r in rounds),
            "leadership_changes": sum(r["leadership_changes"] for r in rounds),
            "servers_cpu_us_per_woken": max(r["servers_cpu_us_per_woken"] for r in rounds),
        }
    for where in ("all_on_one_follower", "spread_over_3"):
        before, after = out.get(f"{where}_unshared"), out.get(f"{where}_shared")
        if before and after:
            out[f"{where}_wake_p99_ratio_shared_to_unshared"] = ratio(after["wake_p99_ms"], before["wake_p99_ms"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="meshfed 10,000-waiter benchmark (prints one JSON document)")
    parser.add_argument("--waiters", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=1, help="rounds per scenario")
    parser.add_argument("--only", action="append", default=[], choices=sorted(SCENARIOS), help="run only these")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="waiter client: bare asyncio protocols (default) or aiohttp's client")
    parser.add_argument("--no-floors", action="store_true",
                        help="skip the bare aiohttp and asyncio servers measured as the floor")
    parser.add_argument("--keep-data", action="store_true", help="keep server data and logs for inspection")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    started = time.monotonic()
    document: dict[str, Any] = {"benchmark": "waiters", "machine": machine(), "wait": WAIT, "client": args.client}
    results = run(args.waiters, args.rounds, args.keep_data, args.only, args.client, not args.no_floors)
    document["verdicts"] = verdicts(results)
    document["meshfed"] = results
    document["wall_seconds"] = round(time.monotonic() - started, 1)
    emit(document)


if __name__ == "__main__":
    main()

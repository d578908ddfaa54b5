"""Blocking-query fan-out: 1,000 parked `GET /v1/catalog/services?index=N&wait=60s`, then ONE write.

DESIGN §5 promises that thousands of waiters cost one asyncio future each and wake together when
the watched table changes. This script measures what that means from a client's side: how long
after the write is acknowledged each waiter gets its answer (p50/p99/max), and what parking the
waiters costs in server memory. The same run measures two baselines: the same write with nobody
waiting (its ack latency), and the wake-up of a single waiter.

Scenarios (each on a fresh datacenter, `--rounds` times, every round with fresh client connections):
- all waiters on the leader;
- all on one follower (default consistency: the follower forwards each blocking read to the
  leader over gRPC, so the leader parks them and the follower holds 1,000 calls open);
- spread over the 3 servers, default consistency;
- spread over the 3 servers with `stale` (each server parks its own waiters).

A round: read the current services index N, open the waiters, wait until the servers'
`consul_rpc_queries_blocking` gauges add up to the number of waiters (or a timeout), read RSS,
send one `PUT /v1/catalog/register` of a new service to the leader, collect every answer.
The write is sent by a separate writer process, so its acknowledgement time is not delayed by this
process taking 1,000 answers off its event loop; both processes stamp times with CLOCK_MONOTONIC
(time.monotonic), which is one clock for the whole machine. The waiters' arrival times do include
this one client's time to handle 1,000 responses in turn; the 1-waiter baseline shows the floor.
A negative "after ack" value means the waiter had its answer before the writer had its ack (the
server wakes watchers as it applies the entry, before it answers the write).

Run from the repository root: python -m tests.bench.bench_blocking_fanout [--waiters 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from meshfed.server.cli.launcher import HTTP_PORT, ServerProcess

from .common import (
    FANOUT_MESHFED_BASE,
    Datacenter,
    emit,
    listen_overflows,
    machine,
    meshfed_datacenter,
    parse_prometheus,
    registration,
    stop_cleanly_on_sigterm,
    summarize_seconds,
)

WAIT = "60s"
PARK_TIMEOUT = 30.0
WAKE_TIMEOUT = 20.0
BASELINE_WRITES = 20
SINGLE_WAITER_ROUNDS = 10
WRITE_TIMEOUT = 10.0
SETTLE_SECONDS = 0.5  # after the gauges say "all parked", let the last requests finish their query


class Rounds:
    """Unique service names, so every write really changes the services table waiters watch."""

    def __init__(self) -> None:
        self.count = 0

    def write_body(self) -> dict[str, Any]:
        self.count += 1
        return registration("fanout-writer", "10.9.0.1", service=f"fanout-{self.count}")


def _writer_main(channel: Connection) -> None:
    """Writer process: one keep-alive connection per server; (host, port, body) in, times out."""
    connections: dict[tuple[str, int], http.client.HTTPConnection] = {}
    while True:
        job = channel.recv()
        if job is None:
            return
        host, port, body = job
        payload = json.dumps(body).encode()
        for attempt in (1, 2):
            connection = connections.get((host, port))
            if connection is None:
                connection = connections[(host, port)] = http.client.HTTPConnection(host, port, timeout=WRITE_TIMEOUT)
            sent = time.monotonic()
            try:
                connection.request("PUT", "/v1/catalog/register", payload, {"Content-Type": "application/json"})
                response = connection.getresponse()
                text = response.read().decode(errors="replace")
                acknowledged = time.monotonic()
                ok = response.status == 200 and text.strip() == "true"
                error = "" if ok else f"HTTP {response.status}: {text[:120]}"
                break
            except (OSError, http.client.HTTPException) as exc:
                acknowledged = time.monotonic()
                error = f"{type(exc).__name__}: {exc}"
                connections.pop((host, port)).close()
                # A kept-alive connection to a server of an earlier (stopped) datacenter on the same
                # address fails at once; a register is idempotent, so one retry on a new one is safe.
                if attempt == 2 or not isinstance(exc, (ConnectionError, http.client.RemoteDisconnected)):
                    break
        channel.send((sent, acknowledged, error))


class Writer:
    """The separate process that sends the one write of each round (see the module docstring)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._channel, child = context.Pipe()
        self._process = context.Process(target=_writer_main, args=(child,), name="fanout-writer", daemon=True)
        self._process.start()
        child.close()

    def _write(self, server: ServerProcess, body: dict[str, Any]) -> tuple[float, float, str]:
        self._channel.send((server.address, HTTP_PORT, body))
        sent, acknowledged, error = self._channel.recv()
        return sent, acknowledged, error

    async def write(self, server: ServerProcess, body: dict[str, Any]) -> tuple[float, float, str]:
        """One catalog write; returns (sent, acknowledged, error or "") in time.monotonic() time."""
        return await asyncio.to_thread(self._write, server, body)

    def close(self) -> None:
        try:
            self._channel.send(None)
        except OSError:
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)


async def services_index(session: aiohttp.ClientSession, server: ServerProcess) -> int:
    async with session.get(server.http + "/v1/catalog/services") as response:
        await response.read()
        return int(response.headers["X-Consul-Index"])


async def leadership_changes(session: aiohttp.ClientSession, servers: list[ServerProcess]) -> int:
    """Sum over servers of gained-or-lost-leadership events: a fan-out must not cost an election."""
    total = 0.0
    for server in servers:
        async with session.get(server.http + "/metrics") as response:
            total += parse_prometheus(await response.text()).get("meshfed_raft_leadership_changes_total", 0.0)
    return int(total)


async def blocking_in_flight(session: aiohttp.ClientSession, servers: list[ServerProcess]) -> int:
    total = 0.0
    for server in servers:
        async with session.get(server.http + "/metrics") as response:
            total += parse_prometheus(await response.text()).get("consul_rpc_queries_blocking", 0.0)
    return int(total)


async def waiter(session: aiohttp.ClientSession, url: str, answers: list[tuple[float, str, int]]) -> None:
    """One blocking read; records when its answer arrived, how it ended and the index it carried."""
    try:
        async with session.get(url) as response:
            arrived = time.monotonic()
            await response.read()
            answers.append((arrived, str(response.status), int(response.headers.get("X-Consul-Index", "0"))))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        answers.append((time.monotonic(), type(exc).__name__, 0))


def memory_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    return {
        node: after[node].get("rss_kib", 0) - before[node].get("rss_kib", 0) for node in before if node in after
    }


async def fanout_round(
    datacenter: Datacenter, targets: list[ServerProcess], waiters: int, stale: bool, rounds: Rounds, writer: Writer
) -> dict[str, Any]:
    leader = datacenter.leader()
    connector = aiohttp.TCPConnector(limit=0)  # unlimited: every waiter needs its own connection
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session, \
            aiohttp.ClientSession() as control:
        index = await services_index(control, leader)
        changes_before = await leadership_changes(control, datacenter.servers)
        memory_before = datacenter.memory()
        path = f"/v1/catalog/services?index={index}&wait={WAIT}" + ("&stale" if stale else "")
        answers: list[tuple[float, str, int]] = []
        overflows_before = listen_overflows()
        park_started = time.monotonic()
        tasks = [
            asyncio.create_task(waiter(session, targets[i % len(targets)].http + path, answers))
            for i in range(waiters)
        ]
        parked = 0
        while time.monotonic() - park_started < PARK_TIMEOUT:
            parked = await blocking_in_flight(control, datacenter.servers)
            if parked >= waiters:
                break
            await asyncio.sleep(0.05)
        park_seconds = time.monotonic() - park_started
        overflows_after = listen_overflows()
        await asyncio.sleep(SETTLE_SECONDS)
        memory_parked = datacenter.memory()
        answered_before_write = len(answers)

        sent, acknowledged, write_error = await writer.write(leader, rounds.write_body())
        done, pending = await asyncio.wait(tasks, timeout=WAKE_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        memory_after = datacenter.memory()
        changes_during = await leadership_changes(control, datacenter.servers) - changes_before
        leader_after = datacenter.leader()

    woken = [arrived for arrived, status, answer_index in answers if status == "200" and answer_index > index]
    failures: dict[str, int] = {}
    for _, status, answer_index in answers:
        if status != "200" or answer_index <= index:
            reason = status if status != "200" else "200 without a newer index"
            failures[reason] = failures.get(reason, 0) + 1
    return {
        "waiters": waiters,
        "leader": leader.node,
        "leader_after": leader_after.node,
        "leadership_changes_during_round": changes_during,
        "parked_seen_by_servers": parked,
        "seconds_to_park": round(park_seconds, 2),
        "host_listen_overflows_while_parking": (
            None if overflows_before is None or overflows_after is None else overflows_after - overflows_before
        ),
        "answered_before_write": answered_before_write,
        "write_ack_ms": round((acknowledged - sent) * 1000, 3),
        "write_error": write_error,
        "woken": len(woken),
        "not_answered_within_s": {str(WAKE_TIMEOUT): len(pending)},
        "other_answers": failures,
        "wake_after_ack": summarize_seconds([t - acknowledged for t in woken]),
        "answered_before_ack": sum(1 for t in woken if t < acknowledged),
        "wake_after_send": summarize_seconds([t - sent for t in woken]),
        "rss_kib_before": {n: m.get("rss_kib") for n, m in memory_before.items()},
        "rss_kib_delta_parked": memory_delta(memory_before, memory_parked),
        "rss_kib_delta_after_wake": memory_delta(memory_before, memory_after),
    }


async def baseline_no_waiters(datacenter: Datacenter, rounds: Rounds, writer: Writer) -> dict[str, Any]:
    leader = datacenter.leader()
    acks: list[float] = []
    errors: list[str] = []
    for _ in range(BASELINE_WRITES):
        sent, acknowledged, error = await writer.write(leader, rounds.write_body())
        if error:
            errors.append(error)
        else:
            acks.append(acknowledged - sent)
    return {"writes": BASELINE_WRITES, "ack": summarize_seconds(acks), "errors": errors}


async def baseline_one_waiter(datacenter: Datacenter, rounds: Rounds, writer: Writer) -> dict[str, Any]:
    """The floor of wake-up latency: one waiter on the leader, woken by the same write."""
    leader = datacenter.leader()
    after_ack: list[float] = []
    after_send: list[float] = []
    problems: list[str] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(SINGLE_WAITER_ROUNDS):
            index = await services_index(session, leader)
            answers: list[tuple[float, str, int]] = []
            task = asyncio.create_task(
                waiter(session, leader.http + f"/v1/catalog/services?index={index}&wait={WAIT}", answers)
            )
            deadline = time.monotonic() + PARK_TIMEOUT
            while await blocking_in_flight(session, datacenter.servers) < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            sent, acknowledged, error = await writer.write(leader, rounds.write_body())
            try:
                await asyncio.wait_for(task, WAKE_TIMEOUT)
            except TimeoutError:
                problems.append(f"not woken within {WAKE_TIMEOUT}s")
                break  # the next rounds would only wait as long again
            if error or not answers or answers[0][1] != "200" or answers[0][2] <= index:
                problems.append(error or f"answer {answers[:1]}")
                continue
            after_ack.append(answers[0][0] - acknowledged)
            after_send.append(answers[0][0] - sent)
    return {
        "rounds": SINGLE_WAITER_ROUNDS,
        "wake_after_ack": summarize_seconds(after_ack),
        "wake_after_send": summarize_seconds(after_send),
        "problems": problems,
    }


async def baselines(datacenter: Datacenter, writer: Writer) -> dict[str, Any]:
    rounds = Rounds()  # one sequence: re-registering an existing service changes nothing and wakes nobody
    return {
        "leader": datacenter.leader().node,
        "write_no_waiters": await baseline_no_waiters(datacenter, rounds, writer),
        "one_waiter": await baseline_one_waiter(datacenter, rounds, writer),
    }


async def scenario(datacenter: Datacenter, name: str, waiters: int, rounds: int, writer: Writer) -> dict[str, Any]:
    leader = datacenter.leader()
    targets, stale = {
        "all_on_leader": ([leader], False),
        "all_on_one_follower": (datacenter.followers()[:1], False),
        "spread_over_3": (datacenter.servers, False),
        "spread_over_3_stale": (datacenter.servers, True),
    }[name]
    writes = Rounds()
    results = [await fanout_round(datacenter, targets, waiters, stale, writes, writer) for _ in range(rounds)]
    return {
        "leader": leader.node,
        "targets": [t.node for t in targets],
        "rounds": results,
        "all_servers_alive": datacenter.alive(),
        "leader_unchanged": datacenter.leader() is leader,
    }


SCENARIOS = ("all_on_leader", "all_on_one_follower", "spread_over_3", "spread_over_3_stale")


def run(waiters: int, rounds: int, keep_data: bool) -> dict[str, Any]:
    """Baselines on one datacenter, then each scenario on a fresh one, so the RSS of a server before
    its first parking is a clean starting point (CPython keeps freed memory, so a second round on
    the same server shows little growth: that is reuse, not a smaller cost)."""
    results: dict[str, Any] = {}
    writer = Writer()
    try:
        with meshfed_datacenter(FANOUT_MESHFED_BASE, keep_data=keep_data) as datacenter:
            results["baselines"] = asyncio.run(baselines(datacenter, writer))
        for name in SCENARIOS:
            with meshfed_datacenter(FANOUT_MESHFED_BASE, keep_data=keep_data) as datacenter:
                results[name] = asyncio.run(scenario(datacenter, name, waiters, rounds, writer))
    finally:
        writer.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="meshfed blocking-query fan-out benchmark (prints one JSON document)")
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per scenario")
    parser.add_argument("--keep-data", action="store_true", help="keep server data and logs for inspection")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    started = time.monotonic()
    document: dict[str, Any] = {"benchmark": "blocking_fanout", "machine": machine(), "wait": WAIT}
    document["meshfed"] = run(args.waiters, args.rounds, args.keep_data)
    document["wall_seconds"] = round(time.monotonic() - started, 1)
    emit(document)


if __name__ == "__main__":
    main()

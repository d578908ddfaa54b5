"""Write throughput and latency of meshfed against raw PySyncObj, measured in the same run.

What a figure means only shows next to what the library under it can do on the same machine at the
same moment, so the script first starts three raw PySyncObj node processes (raw_pysyncobj_node.py,
client inside the leader, as reference/pysyncobj.md §4 measured) and then a real 3-server meshfed
datacenter (server/cli/launcher.py), and reports both plus their ratios. Phases run one after the other
on fresh clusters, each for `--seconds`; the whole script stays well under three minutes.

meshfed phases, all writing `Catalog.Register` of one of 256 nodes with a changing address (every
write is a real update): sequential HTTP to the leader, sequential HTTP through a follower
(forwarded over gRPC), 64 concurrent HTTP writers, sequential gRPC and 64 concurrent gRPC callers
straight to the leader. Around each phase the leader's /metrics are scraped so the group-commit
histogram (`meshfed_raft_batch_commands`) yields commands per log entry for that phase alone.

Run from the repository root: python -m tests.bench.bench_writes [--seconds 5] [--keep-data]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from typing import Any

import aiohttp

from meshfed.fsm.records import Node, NodeService, to_wire
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader

from .common import (
    BENCH_DATACENTER,
    WRITES_MESHFED_BASE,
    WRITES_RAW_BASE,
    Datacenter,
    Deadline,
    cpu_seconds,
    emit,
    histogram_mean,
    machine,
    meshfed_datacenter,
    process_cpu_seconds,
    process_memory_kib,
    rate,
    ratio,
    registration,
    scrape,
    stop_cleanly_on_sigterm,
    summarize_seconds,
)

RAW_RAFT_PORT = 8301
RAW_CONTROL_PORT = 8311
PIPELINE_WINDOW = 200
CONCURRENCY = 64
NODE_NAMES = 256
WARMUP_WRITES = 50
HTTP_FLOOR_SECONDS = 2.0
REQUEST_TIMEOUT = 10.0
ISSUE_P50_LIMIT_MS = 10.0
RPC_PORT = 8300
SERVICE_NAME = "web"


# ---- raw PySyncObj baseline -------------------------------------------------------------------


class RawCluster:
    """Three raw_pysyncobj_node processes and a control connection to each."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.addresses = [f"{WRITES_RAW_BASE}.{i + 1}" for i in range(3)]
        self.password = secrets.token_hex(16)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.streams: list[Any] = []

    def start(self) -> None:
        for i, address in enumerate(self.addresses):
            peers = [f"{a}:{RAW_RAFT_PORT}" for a in self.addresses if a != address]
            command = [
                sys.executable, "-m", "tests.bench.raw_pysyncobj_node",
                "-self", f"{address}:{RAW_RAFT_PORT}", "-data-dir", os.path.join(self.root, f"n{i + 1}"),
                "-password", self.password, "-control", f"{address}:{RAW_CONTROL_PORT}",
            ]
            for peer in peers:
                command += ["-peer", peer]
            with open(os.path.join(self.root, f"n{i + 1}.log"), "ab") as log:
                self.processes.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=_project_root(),
                                     start_new_session=True)
                )
        for address in self.addresses:
            self.streams.append(_connect(address, RAW_CONTROL_PORT, timeout=20))

    def request(self, node: int, message: dict[str, Any]) -> dict[str, Any]:
        stream = self.streams[node]
        stream.write(json.dumps(message) + "\n")
        stream.flush()
        line = stream.readline()
        if not line:
            raise RuntimeError(f"raw node {node + 1} closed its control channel; see {self.root}/n{node + 1}.log")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def wait_leader(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = [self.request(i, {"op": "status"}) for i in range(len(self.addresses))]
            leaders = [i for i, s in enumerate(statuses) if s["leader"] and s["has_quorum"]]
            if len(leaders) == 1 and all(s["ready"] for s in statuses):
                return leaders[0]
            time.sleep(0.1)
        raise TimeoutError(f"raw PySyncObj cluster elected no leader within {timeout}s; logs in {self.root}")

    def stop(self) -> None:
        for i, stream in enumerate(self.streams):
            try:
                self.request(i, {"op": "stop"})
                stream.close()
            except (OSError, RuntimeError, ValueError):
                pass
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _connect(host: str, port: int, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=60)
            return connection.makefile("rw")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def raw_cluster(keep_data: bool) -> Any:
    root = tempfile.mkdtemp(prefix="raw-pysyncobj-bench-")
    cluster = RawCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if keep_data:
            print(f"bench: raw PySyncObj data and logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def raw_phase(reply: dict[str, Any]) -> dict[str, Any]:
    latencies = reply["latencies"]
    figures = {
        "ops": len(latencies),
        "ops_per_s": rate(len(latencies), reply["elapsed"]),
        "latency": summarize_seconds(latencies),
        "errors": reply["errors"],
    }
    if "drained" in reply:
        figures["all_callbacks_returned"] = reply["drained"]
    return figures


def run_raw(seconds: float, keep_data: bool) -> dict[str, Any]:
    with raw_cluster(keep_data) as cluster:
        leader = cluster.wait_leader()
        pid = cluster.processes[leader].pid
        cluster.request(leader, {"op": "sequential", "seconds": 0.5})  # warm-up: connections, journal growth
        cpu_before = process_cpu_seconds(pid)
        sequential = raw_phase(cluster.request(leader, {"op": "sequential", "seconds": seconds}))
        sequential["leader_cpu_share"] = _cpu_share(cpu_before, process_cpu_seconds(pid), seconds)
        cpu_before = process_cpu_seconds(pid)
        pipelined = raw_phase(
            cluster.request(leader, {"op": "pipelined", "seconds": seconds, "window": PIPELINE_WINDOW})
        )
        pipelined["leader_cpu_share"] = _cpu_share(cpu_before, process_cpu_seconds(pid), seconds)
        return {
            "setup": "3 node processes, client thread inside the leader, appendEntriesUseBatch=False, "
            "journal+dump, password, meshfed RaftTimings, 10-byte str values over 256 keys",
            "sequential_blocking": sequential,
            f"pipelined_{PIPELINE_WINDOW}_in_flight": pipelined,
            "leader_memory_kib": process_memory_kib(pid),
        }


def _cpu_share(before: float | None, after: float | None, seconds: float) -> float | None:
    if before is None or after is None:
        return None
    return round((after - before) / seconds, 2)


# ---- meshfed -----------------------------------------------------------------------------------


class Writes:
    """Numbered catalog registrations: 256 node names, each write changes the node's address.
    With `service`, each write also registers one service on the node (the write users make:
    issue #13 goal 4 measures this one)."""

    def __init__(self, service: bool = False) -> None:
        self.next = 0
        self.service = service

    def take(self) -> int:
        self.next += 1
        return self.next

    @staticmethod
    def address(i: int) -> str:
        return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"

    def http_body(self, i: int) -> dict[str, Any]:
        return registration(f"bench-{i % NODE_NAMES}", self.address(i), SERVICE_NAME if self.service else None)

    def rpc_body(self, i: int) -> dict[str, Any]:
        node = Node(node=f"bench-{i % NODE_NAMES}", address=self.address(i), datacenter=BENCH_DATACENTER)
        service = NodeService(id=SERVICE_NAME, service=SERVICE_NAME, port=8080) if self.service else None
        return {"node": to_wire(node), "service": to_wire(service) if service else None, "checks": []}


class PhaseResult:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


async def drive(workers: int, seconds: float, one: Callable[[PhaseResult], Awaitable[None]]) -> tuple[PhaseResult, float]:
    """Run `workers` loops of `one` until the deadline; returns what they saw and the elapsed time."""
    result = PhaseResult()
    deadline = Deadline(seconds)

    async def loop() -> None:
        while deadline.open():
            await one(result)

    await asyncio.gather(*(loop() for _ in range(workers)))
    return result, deadline.elapsed()


def http_writer(session: aiohttp.ClientSession, url: str, writes: Writes) -> Callable[[PhaseResult], Awaitable[None]]:
    async def one(result: PhaseResult) -> None:
        i = writes.take()
        started = time.perf_counter()
        try:
            async with session.put(url, json=writes.http_body(i)) as response:
                text = await response.text()
                if response.status == 200 and text.strip() == "true":
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.error(f"HTTP {response.status}: {text.strip()[:120]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.error(f"{type(exc).__name__}: {exc}"[:160])

    return one


def rpc_writer(pool: ConnectionPool, address: str, writes: Writes) -> Callable[[PhaseResult], Awaitable[None]]:
    async def one(result: PhaseResult) -> None:
        i = writes.take()
        started = time.perf_counter()
        try:
            _, ok = await pool.call(
                address, "Catalog/Register", RequestHeader(request_id=uuid.uuid4().hex), writes.rpc_body(i),
                timeout=REQUEST_TIMEOUT,
            )
            if ok is True:
                result.latencies.append(time.perf_counter() - started)
            else:
                result.error(f"unexpected reply {ok!r}"[:120])
        except RPCError as exc:
            result.error(f"{exc.code.name}: {exc.message}"[:160])

    return one


async def measured_phase(
    datacenter: Datacenter, workers: int, seconds: float, one: Callable[[PhaseResult], Awaitable[None]]
) -> dict[str, Any]:
    """One phase plus what the leader says about it: group commit, commit time, CPU share."""
    leader = datacenter.leader()
    assert leader.process is not None
    before = scrape(leader)
    leader_cpu = process_cpu_seconds(leader.process.pid)
    client_cpu = cpu_seconds()
    result, elapsed = await drive(workers, seconds, one)
    after = scrape(leader)
    figures: dict[str, Any] = {
        "ops": len(result.latencies),
        "ops_per_s": rate(len(result.latencies), elapsed),
        "latency": summarize_seconds(result.latencies),
        "errors": result.errors,
        "commands_per_log_entry": _round(histogram_mean(before, after, "meshfed_raft_batch_commands")),
        "raft_entry_commit_mean_ms": _ms(histogram_mean(before, after, "meshfed_raft_commit_seconds")),
        "leader_cpu_share": _cpu_share(leader_cpu, process_cpu_seconds(leader.process.pid), elapsed),
        "client_cpu_share": round((cpu_seconds() - client_cpu) / elapsed, 2),
    }
    if datacenter.leader() is not leader:
        figures["leader_changed_during_phase"] = True
    return figures


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def http_floor(session: aiohttp.ClientSession, url: str, seconds: float) -> dict[str, Any]:
    """A read that touches no Raft: what HTTP + aiohttp alone cost per request on this machine."""

    async def one(result: PhaseResult) -> None:
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            if response.status == 200:
                result.latencies.append(time.perf_counter() - started)
            else:
                result.error(f"HTTP {response.status}")

    result, elapsed = await drive(1, seconds, one)
    return {"ops_per_s": rate(len(result.latencies), elapsed), "latency": summarize_seconds(result.latencies)}


async def run_meshfed_phases(datacenter: Datacenter, seconds: float) -> dict[str, Any]:
    leader = datacenter.leader()
    follower = datacenter.followers()[0]
    writes, with_service = Writes(), Writes(service=True)
    figures: dict[str, Any] = {"leader": leader.node, "follower_used": follower.node}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        leader_url = leader.http + "/v1/catalog/register"
        follower_url = follower.http + "/v1/catalog/register"
        warm = http_writer(session, leader_url, writes)
        warm_up = PhaseResult()
        for _ in range(WARMUP_WRITES):
            await warm(warm_up)
        if warm_up.errors:
            figures["warm_up_errors"] = warm_up.errors
        figures["http_floor_get_status_leader"] = await http_floor(
            session, leader.http + "/v1/status/leader", HTTP_FLOOR_SECONDS
        )
        figures["http_sequential_leader"] = await measured_phase(
            datacenter, 1, seconds, http_writer(session, leader_url, writes)
        )
        figures["http_sequential_via_follower"] = await measured_phase(
            datacenter, 1, seconds, http_writer(session, follower_url, writes)
        )
        figures[f"http_concurrent_{CONCURRENCY}_leader"] = await measured_phase(
            datacenter, CONCURRENCY, seconds, http_writer(session, leader_url, writes)
        )
        figures[f"http_concurrent_{CONCURRENCY}_leader_with_service"] = await measured_phase(
            datacenter, CONCURRENCY, seconds, http_writer(session, leader_url, with_service)
        )
    pool = ConnectionPool()
    try:
        rpc_address = f"{leader.address}:{RPC_PORT}"
        figures["grpc_sequential_leader"] = await measured_phase(
            datacenter, 1, seconds, rpc_writer(pool, rpc_address, writes)
        )
        figures[f"grpc_concurrent_{CONCURRENCY}_leader"] = await measured_phase(
            datacenter, CONCURRENCY, seconds, rpc_writer(pool, rpc_address, writes)
        )
        figures[f"grpc_concurrent_{CONCURRENCY}_leader_with_service"] = await measured_phase(
            datacenter, CONCURRENCY, seconds, rpc_writer(pool, rpc_address, with_service)
        )
    finally:
        await pool.close()
    figures["memory_kib"] = datacenter.memory()
    figures["all_servers_alive"] = datacenter.alive()
    return figures


def run_meshfed(seconds: float, keep_data: bool) -> dict[str, Any]:
    with meshfed_datacenter(WRITES_MESHFED_BASE, keep_data=keep_data) as datacenter:
        return asyncio.run(run_meshfed_phases(datacenter, seconds))


async def sequential_and_concurrent(datacenter: Datacenter, seconds: float) -> dict[str, Any]:
    leader = datacenter.leader()
    url = leader.http + "/v1/catalog/register"
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        writes, with_service = Writes(), Writes(service=True)
        warm = http_writer(session, url, writes)
        for _ in range(WARMUP_WRITES):
            await warm(PhaseResult())
        return {
            "http_sequential_leader": await measured_phase(datacenter, 1, seconds, http_writer(session, url, writes)),
            f"http_concurrent_{CONCURRENCY}_leader_with_service": await measured_phase(
                datacenter, CONCURRENCY, seconds, http_writer(session, url, with_service)),
        }


def run_meshfed_sync_interval(seconds: float, keep_data: bool) -> dict[str, Any]:
    """The same writes with `raft_journal_sync = "interval"`: no sync before an acknowledgement, as
    the raw baseline makes none. What separates meshfed's path from the disk's share of it."""
    config = {"raft_journal_sync": "interval"}
    with meshfed_datacenter(WRITES_MESHFED_BASE, keep_data=keep_data, config=config) as datacenter:
        return asyncio.run(sequential_and_concurrent(datacenter, seconds))


# ---- report ------------------------------------------------------------------------------------


def ratios(raw: dict[str, Any], meshfed: dict[str, Any]) -> dict[str, Any]:
    raw_seq = raw["sequential_blocking"]
    raw_pipe = raw[f"pipelined_{PIPELINE_WINDOW}_in_flight"]
    http_seq = meshfed["http_sequential_leader"]
    http_fwd = meshfed["http_sequential_via_follower"]
    http_conc = meshfed[f"http_concurrent_{CONCURRENCY}_leader"]
    rpc_seq = meshfed["grpc_sequential_leader"]
    rpc_conc = meshfed[f"grpc_concurrent_{CONCURRENCY}_leader"]
    http_svc = meshfed[f"http_concurrent_{CONCURRENCY}_leader_with_service"]
    rpc_svc = meshfed[f"grpc_concurrent_{CONCURRENCY}_leader_with_service"]

    def p50(figures: dict[str, Any]) -> float | None:
        value: float | None = figures["latency"].get("p50_ms")
        return value

    return {
        "http_sequential_ops__over__raw_sequential_ops": ratio(http_seq["ops_per_s"], raw_seq["ops_per_s"]),
        "http_sequential_p50__over__raw_sequential_p50": ratio(p50(http_seq), p50(raw_seq)),
        "http_via_follower_p50__over__http_leader_p50": ratio(p50(http_fwd), p50(http_seq)),
        "grpc_sequential_ops__over__raw_sequential_ops": ratio(rpc_seq["ops_per_s"], raw_seq["ops_per_s"]),
        "http_concurrent_ops__over__raw_pipelined_ops": ratio(http_conc["ops_per_s"], raw_pipe["ops_per_s"]),
        "grpc_concurrent_ops__over__raw_pipelined_ops": ratio(rpc_conc["ops_per_s"], raw_pipe["ops_per_s"]),
        # Issue #13 goal 4: >= 1.0, and gRPC within 10 % of HTTP.
        "http_concurrent_with_service_ops__over__raw_pipelined_ops": ratio(http_svc["ops_per_s"], raw_pipe["ops_per_s"]),
        "grpc_concurrent_with_service_ops__over__raw_pipelined_ops": ratio(rpc_svc["ops_per_s"], raw_pipe["ops_per_s"]),
        "grpc_with_service_ops__over__http_with_service_ops": ratio(rpc_svc["ops_per_s"], http_svc["ops_per_s"]),
    }


def interval_ratios(raw: dict[str, Any], interval: dict[str, Any]) -> dict[str, Any]:
    raw_seq = raw["sequential_blocking"]
    raw_pipe = raw[f"pipelined_{PIPELINE_WINDOW}_in_flight"]
    seq = interval["http_sequential_leader"]
    svc = interval[f"http_concurrent_{CONCURRENCY}_leader_with_service"]
    return {
        "sync_interval_http_sequential_p50__over__raw_sequential_p50": ratio(
            seq["latency"].get("p50_ms"), raw_seq["latency"].get("p50_ms")),
        "sync_interval_http_concurrent_with_service_ops__over__raw_pipelined_ops": ratio(
            svc["ops_per_s"], raw_pipe["ops_per_s"]),
    }


def issue_requirement(meshfed: dict[str, Any]) -> dict[str, Any]:
    leader_p50 = meshfed["http_sequential_leader"]["latency"].get("p50_ms")
    follower_p50 = meshfed["http_sequential_via_follower"]["latency"].get("p50_ms")
    return {
        "requirement": f"one write through the HTTP API < {ISSUE_P50_LIMIT_MS:g} ms p50 on loopback",
        "leader_p50_ms": leader_p50,
        "via_follower_p50_ms": follower_p50,
        "holds_on_leader": leader_p50 is not None and leader_p50 < ISSUE_P50_LIMIT_MS,
        "holds_via_follower": follower_p50 is not None and follower_p50 < ISSUE_P50_LIMIT_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="meshfed write benchmark (prints one JSON document)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured phase")
    parser.add_argument("--keep-data", action="store_true", help="keep data and logs (raw and meshfed) for inspection")
    parser.add_argument("--compare-sync-interval", action="store_true",
                        help="also run the sequential and 64-writer phases on a datacenter with raft_journal_sync=interval")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    started = time.monotonic()
    document: dict[str, Any] = {"benchmark": "writes", "machine": machine(), "phase_seconds": args.seconds}
    raw = run_raw(args.seconds, args.keep_data)
    meshfed = run_meshfed(args.seconds, args.keep_data)
    document["baseline_raw_pysyncobj"] = raw
    document["meshfed"] = meshfed
    document["ratios"] = ratios(raw, meshfed)
    if args.compare_sync_interval:
        document["meshfed_sync_interval"] = interval = run_meshfed_sync_interval(args.seconds, args.keep_data)
        document["ratios"].update(interval_ratios(raw, interval))
    document["issue_requirement"] = issue_requirement(meshfed)
    document["wall_seconds"] = round(time.monotonic() - started, 1)
    emit(document)


if __name__ == "__main__":
    main()

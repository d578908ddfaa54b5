"""Replication lag, primary -> secondary, through the mesh gateways (issue #3 benchmark).

Setup: the two-DC layout of `meshfed demo` (TLS everywhere, one gateway per DC) on
127.0.210.x (dc1) and 127.0.211.x (dc2). Each sample writes one federation state into the
primary with `FederationState/Apply` over mTLS gRPC (as a secondary's anti-entropy does), then
waits with a blocking query until it is visible on a dc2 server (cross-DC lag). The baseline in
the same run is the same write's visibility on a dc1 follower (intra-DC replication), so the ratio
says what crossing the gateways and the replicator adds.

Two scenarios: the table as it is (2-3 DCs), and after loading 1,000 extra DCs × 4 gateways into
the primary (each replication round then ships and diffs 1,000 records).

    python -m tests.bench.bench_replication_lag [--writes 200] [--big-writes 50] [--keep-data]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from typing import Any

import aiohttp

from meshfed.fsm.records import (
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServiceAddress,
    to_wire,
)
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.header import RequestHeader
from meshfed.rpc.tls import load_channel_credentials
from meshfed.server.cli.launcher import federated_datacenters, get_json, processes_of, start_federation

from .common import emit, machine, process_memory_kib, summarize_seconds


def gateway_csn(dc: str, n: int) -> CheckServiceNode:
    host = f"198.18.{n // 250}.{n % 250 + 1}"  # documentation range: never dialed, only stored
    return CheckServiceNode(
        node=Node(node=f"{dc}-gw{n}", address=host),
        service=NodeService(id="mesh-gateway", service="mesh-gateway", kind="mesh-gateway", address=host, port=8443,
                            tagged_addresses={"wan": ServiceAddress(host, 443)}, meta={"consul-wan-federation": "1"}),
        checks=(HealthCheck(node=f"{dc}-gw{n}", check_id="alive", status="passing"),),
    )


async def apply(pool: ConnectionPool, address: str, name: str, state: FederationState) -> None:
    _, reply = await pool.call(address, "FederationState/Apply", RequestHeader(request_id=uuid.uuid4().hex),
                               {"op": "upsert", "state": to_wire(state)}, timeout=30, server_name=name)
    assert reply is True


async def wait_visible(session: aiohttp.ClientSession, http: str, datacenter: str, marker: str, index: int) -> int:
    """Blocking queries on /v1/internal/federation-state/<dc> until its UpdatedAt is `marker`."""
    while True:
        async with session.get(f"{http}/v1/internal/federation-state/{datacenter}?stale&index={index}&wait=30s") as r:
            index = int(r.headers.get("X-Consul-Index", "1"))
            if r.status == 200 and (await r.json())["State"]["UpdatedAt"] == marker:
                return index


async def measure(pool: ConnectionPool, primary: str, name: str, dc1_http: str, dc2_http: str, writes: int) -> dict[str, Any]:
    cross: list[float] = []
    local: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for i in range(writes):
            marker = f"2026-01-01T00:00:{i % 60:02d}.{i:06d}Z"
            await apply(pool, primary, name, FederationState("bench-dc", updated_at=marker))
            written = time.perf_counter()

            async def seen(http: str, sink: list[float], marker: str = marker, written: float = written) -> None:
                await wait_visible(session, http, "bench-dc", marker, 1)
                sink.append(time.perf_counter() - written)

            await asyncio.gather(seen(dc1_http, local), seen(dc2_http, cross))
    cross_summary, local_summary = summarize_seconds(cross), summarize_seconds(local)
    return {
        "writes": writes,
        "cross_dc_lag": cross_summary,
        "baseline_intra_dc_follower_lag": local_summary,
        "ratio_p50": cross_summary["p50_ms"] / local_summary["p50_ms"] if local_summary["p50_ms"] else None,
    }


async def run(args: argparse.Namespace, root: str) -> dict[str, Any]:
    dcs = federated_datacenters(root, ["127.0.210", "127.0.211"])
    processes = processes_of(dcs)
    try:
        start_federation(dcs, timeout=90)
        dc1, dc2 = dcs
        leader_address = get_json(dc1.servers[0].http + "/v1/status/leader")[2]
        leader = next(s for s in dc1.servers if s.rpc_address == leader_address)
        follower = next(s for s in dc1.servers if s is not leader)
        tls_dir = f"{root}/tls"
        pool = ConnectionPool(load_channel_credentials(f"{tls_dir}/consul-agent-ca.pem", f"{tls_dir}/dc1-server-consul-0.pem",
                                                       f"{tls_dir}/dc1-server-consul-0-key.pem"))
        name = "server.dc1.consul"
        primary = f"{leader.address}:8300"
        try:
            small = await measure(pool, primary, name, follower.http, dc2.servers[0].http, args.writes)
            load_started = time.perf_counter()
            for n in range(args.big_dcs):
                dc = f"big{n:04d}"
                await apply(pool, primary, name, FederationState(dc, tuple(gateway_csn(dc, 4 * n + g) for g in range(4))))
            load_seconds = time.perf_counter() - load_started
            big = await measure(pool, primary, name, follower.http, dc2.servers[0].http, args.big_writes)
        finally:
            await pool.close()
        dc2_leader_address = get_json(dc2.servers[0].http + "/v1/status/leader")[2]
        dc2_leader = next(s for s in dc2.servers if s.rpc_address == dc2_leader_address)
        _, _, replication = get_json(dc2_leader.http + "/v1/internal/replication")
        return {
            "benchmark": "replication_lag",
            "machine": machine(),
            "table_small": small,
            "table_1000_dcs_x_4_gateways": {**big, "load_seconds": load_seconds, "extra_datacenters": args.big_dcs},
            "dc2_replication_status": replication["Types"][0] if replication else None,
            "rss_kib": {"dc1_leader": process_memory_kib(leader.process.pid) if leader.process else None,
                        "dc2_leader": process_memory_kib(dc2_leader.process.pid) if dc2_leader.process else None},
        }
    finally:
        for process in processes:
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--big-writes", type=int, default=50)
    parser.add_argument("--big-dcs", type=int, default=1000)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="meshfed-bench-repl-")
    try:
        emit(asyncio.run(run(args, root)))
    finally:
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Federation deltas with 1,000 DCs x 4 gateways on the primary (issue #13, goal 1).

Goals: mesh-gateways list p99 < 50 ms, isolated-write replication lag p99 < 100 ms, full resync of
a new secondary < 10 s, CPU per write proportional to what changed, not to the table.

Setup: the two-DC layout of `meshfed demo` (TLS, one gateway per DC) on 127.0.214.x (dc1, the
primary) and 127.0.215.x (dc2); dc3 on 127.0.216.x is started only after the primary holds 1,000
extra DCs, to time a fresh secondary's full resync. Federation states are written into the primary
leader with `FederationState/Apply` over mTLS gRPC, as a secondary's anti-entropy does.

Same-run baseline, twice over: every figure is taken with a small table first, then after loading
1,000 DCs; and the whole scenario runs first with `MESHFED_FEDERATION_DELTA=0` (the servers list
and diff the whole table on every replication round, followers forward the whole gateway list, and
a resync applies one record per paced step) and then with the delta path on.

Figures per mode and table:
- `GET /v1/internal/federation-states/mesh-gateways` on the dc1 leader and a dc1 follower (default
  consistency), p50/p99 over LIST_SAMPLES sequential reads after a first one reported apart;
- isolated-write lag dc1 -> dc2: one write of a small record, then a blocking read on a dc2 server
  until it shows; p50/p99 over `--writes` writes, one at a time, ISOLATION_SECONDS apart (more than
  one replication round at the default `replication_rate` of 1/s);
- CPU seconds of the three dc1 servers (from /proc) per write, over those writes (the gateways'
  mesh-gateway long-polls and dc2's replication long-poll are what each write wakes);
- CPU seconds of dc1's and dc2's mesh gateways per write (each write wakes dc1's gateway's
  gateway-list watch; with `--gateway-delta off` it re-reads and parses the whole list, up to 3.2 MB);
- with 1,000 DCs only: dc3's full resync, from its leader being elected to holding every record.

`--gateway-delta off` sets `MESHFED_GATEWAY_DELTA=0` for the processes started: the mesh gateways
read the whole gateway list on every change instead of following `?changes-since=` deltas.

    python -m tests.bench.bench_federation_delta [--dcs 1000] [--writes 12] [--only delta|baseline]
        [--gateway-delta on|off]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from typing import Any

import aiohttp

from meshfed.fsm.records import FederationState, to_wire
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.header import RequestHeader
from meshfed.rpc.tls import load_channel_credentials
from meshfed.server.cli.launcher import (
    FederatedDatacenter,
    federated_datacenters,
    get_json,
    processes_of,
    wait_for_federation,
    wait_for_leader,
)

from .bench_federation_scale import big_state
from .common import (
    emit,
    machine,
    process_cpu_seconds,
    ratio,
    servers_cpu_seconds,
    stop_cleanly_on_sigterm,
    summarize_seconds,
)

BASES = ("127.0.214", "127.0.215", "127.0.216")
LIST_PATH = "/v1/internal/federation-states/mesh-gateways"
LIST_SAMPLES = 30
LOAD_CONCURRENCY = 32
ISOLATION_SECONDS = 1.05
DELTA_ENV = "MESHFED_FEDERATION_DELTA"
GATEWAY_DELTA_ENV = "MESHFED_GATEWAY_DELTA"  # server/dataplane/gateway.py
SERVER_NAME = "server.dc1.consul"


def leader_of(dc: FederatedDatacenter) -> Any:
    _, _, address = get_json(dc.servers[0].http + "/v1/status/leader")
    return next(s for s in dc.servers if s.rpc_address == address)


async def apply(pool: ConnectionPool, address: str, state: FederationState) -> None:
    _, reply = await pool.call(address, "FederationState/Apply", RequestHeader(request_id=uuid.uuid4().hex),
                               {"op": "upsert", "state": to_wire(state)}, timeout=30, server_name=SERVER_NAME)
    assert reply is True


async def list_latency(session: aiohttp.ClientSession, http: str) -> dict[str, Any]:
    """Warm reads; the first read after the load is reported apart (`first_ms`): it fills this
    server's per-record caches (encoding 1,000 records once), which a gateway's long-poll does in a
    running federation."""
    times: list[float] = []
    size = 0
    started = time.perf_counter()
    async with session.get(http + LIST_PATH) as response:
        await response.read()
    first = time.perf_counter() - started
    for _ in range(LIST_SAMPLES):
        started = time.perf_counter()
        async with session.get(http + LIST_PATH) as response:
            body = await response.read()
            assert response.status == 200, (response.status, body[:200])
        times.append(time.perf_counter() - started)
        size = len(body)
    return {**summarize_seconds(times), "first_ms": round(first * 1000, 1), "bytes": size}


async def wait_visible(session: aiohttp.ClientSession, http: str, marker: str) -> None:
    index = 1
    while True:
        async with session.get(f"{http}/v1/internal/federation-state/bench-dc?stale&index={index}&wait=30s") as r:
            index = int(r.headers.get("X-Consul-Index", "1"))
            if r.status == 200 and (await r.json())["State"]["UpdatedAt"] == marker:
                return


def cpu(dc: FederatedDatacenter) -> float:
    return servers_cpu_seconds(dc.servers)


def gateway_cpu(dc: FederatedDatacenter) -> float:
    process = dc.gateway.process
    return (process_cpu_seconds(process.pid) or 0.0) if process else 0.0


async def lag(session: aiohttp.ClientSession, pool: ConnectionPool, dc1: FederatedDatacenter,
              dc2: FederatedDatacenter, writes: int, label: str) -> dict[str, Any]:
    primary = leader_of(dc1).rpc_address
    samples: list[float] = []
    cpu_before, gateways_before = cpu(dc1), (gateway_cpu(dc1), gateway_cpu(dc2))
    for i in range(writes):
        marker = f"2026-01-01T00:00:{i % 60:02d}.{i:06d}Z-{label}"
        # Isolated writes: replication rounds are rate-limited (replication_rate = 1/s, burst 5, the
        # defaults, as Consul's); a write closer than that to the previous one measures the bucket.
        await asyncio.sleep(ISOLATION_SECONDS)
        written = time.perf_counter()
        await apply(pool, primary, FederationState("bench-dc", updated_at=marker))
        await wait_visible(session, dc2.servers[i % 3].http, marker)
        samples.append(time.perf_counter() - written)
    return {"writes": writes, "lag_dc1_to_dc2": summarize_seconds(samples),
            "lag_samples_ms": sorted(round(s * 1000, 1) for s in samples),
            "cpu_seconds_per_write_dc1_servers": round((cpu(dc1) - cpu_before) / writes, 4),
            "cpu_seconds_per_write_dc1_gateway": round((gateway_cpu(dc1) - gateways_before[0]) / writes, 4),
            "cpu_seconds_per_write_dc2_gateway": round((gateway_cpu(dc2) - gateways_before[1]) / writes, 4)}


async def load(pool: ConnectionPool, dc1: FederatedDatacenter, count: int) -> float:
    primary = leader_of(dc1).rpc_address
    started = time.perf_counter()
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            await apply(pool, primary, big_state(queue.pop()))

    await asyncio.gather(*(worker() for _ in range(LOAD_CONCURRENCY)))
    return time.perf_counter() - started


async def wait_holding_one(session: aiohttp.ClientSession, http: str, count: int) -> None:
    """Until this server's gateway list has at least `count` DCs. A blocking read (as the gateways'
    own watch): it answers once per applied change instead of every poll re-reading up to 3.2 MB
    from three servers four times a second, which loaded the very servers being timed."""
    index = 0
    while True:
        try:
            async with session.get(f"{http}{LIST_PATH}?stale&index={index}&wait=30s") as r:
                body = await r.json() if r.status == 200 else {}
                new_index = int(r.headers.get("X-Consul-Index", "0"))
        except (aiohttp.ClientError, ValueError):
            await asyncio.sleep(0.25)
            continue
        if len(body) >= count:
            return
        if new_index <= index:
            await asyncio.sleep(0.05)
        index = new_index


async def wait_holding(session: aiohttp.ClientSession, dc: FederatedDatacenter, count: int, timeout: float) -> float:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(wait_holding_one(session, s.http, count) for s in dc.servers)), timeout)
    except TimeoutError:
        raise TimeoutError(f"{dc.name} did not reach {count} federation states in {timeout} s") from None
    return time.perf_counter() - started


async def table(session: aiohttp.ClientSession, pool: ConnectionPool, dc1: FederatedDatacenter,
                dc2: FederatedDatacenter, writes: int, label: str) -> dict[str, Any]:
    leader = leader_of(dc1)
    follower = next(s for s in dc1.servers if s is not leader)
    return {
        "list_on_leader": await list_latency(session, leader.http),
        "list_on_follower": await list_latency(session, follower.http),
        **await lag(session, pool, dc1, dc2, writes, label),
    }


async def scenario(root: str, dcs: list[FederatedDatacenter], args: argparse.Namespace, label: str) -> dict[str, Any]:
    dc1, dc2, dc3 = dcs
    for process in processes_of([dc1, dc2]):
        process.start()
    for dc in (dc1, dc2):
        wait_for_leader(dc.servers, timeout=60)
    wait_for_federation([dc1, dc2], 90)
    tls = f"{root}/tls"
    pool = ConnectionPool(load_channel_credentials(f"{tls}/consul-agent-ca.pem", f"{tls}/dc1-server-consul-0.pem",
                                                   f"{tls}/dc1-server-consul-0-key.pem"))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            small = await table(session, pool, dc1, dc2, args.writes, f"{label}-small")
            load_seconds = await load(pool, dc1, args.dcs)
            total = args.dcs + 2  # DCs with gateways: the loaded ones, dc1 and dc2
            await wait_holding(session, dc2, total, 120)
            big = await table(session, pool, dc1, dc2, args.writes, f"{label}-big")
            started = time.perf_counter()
            for process in (*dc3.servers, dc3.gateway):
                process.start()
            wait_for_leader(dc3.servers, timeout=60)
            elected = time.perf_counter()
            await wait_holding(session, dc3, total, 120)
            resync = {"from_leader_elected_s": round(time.perf_counter() - elected, 2),
                      "from_process_start_s": round(time.perf_counter() - started, 2)}
    finally:
        await pool.close()
    return {"small_table": small, f"table_{args.dcs}_dcs_x_4_gateways": {**big, "load_seconds": round(load_seconds, 2)},
            "fresh_secondary_full_resync": resync}


def run(args: argparse.Namespace, delta: bool) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="meshfed-bench-delta-")
    os.environ[DELTA_ENV] = "1" if delta else "0"  # inherited by the servers started next
    os.environ[GATEWAY_DELTA_ENV] = "1" if args.gateway_delta == "on" else "0"  # and by the gateways
    dcs = federated_datacenters(root, list(BASES), names=("dc1", "dc2", "dc3"))
    try:
        return asyncio.run(scenario(root, dcs, args, "delta" if delta else "baseline"))
    finally:
        for process in processes_of(dcs):
            process.stop()
        os.environ.pop(DELTA_ENV, None)
        os.environ.pop(GATEWAY_DELTA_ENV, None)
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)


def verdicts(result: dict[str, Any], dcs: int) -> dict[str, Any]:
    small, big = result["small_table"], result[f"table_{dcs}_dcs_x_4_gateways"]
    cpu_key = "cpu_seconds_per_write_dc1_servers"
    return {
        "list_on_leader_p99_ms": big["list_on_leader"]["p99_ms"],
        "list_on_follower_p99_ms": big["list_on_follower"]["p99_ms"],
        "list_p99_under_50ms": max(big["list_on_leader"]["p99_ms"], big["list_on_follower"]["p99_ms"]) < 50,
        "lag_p99_ms": big["lag_dc1_to_dc2"]["p99_ms"],
        "lag_p99_under_100ms": big["lag_dc1_to_dc2"]["p99_ms"] < 100,
        "lag_p99_ratio_big_to_small": ratio(big["lag_dc1_to_dc2"]["p99_ms"], small["lag_dc1_to_dc2"]["p99_ms"]),
        "full_resync_s": result["fresh_secondary_full_resync"]["from_leader_elected_s"],
        "full_resync_under_10s": result["fresh_secondary_full_resync"]["from_leader_elected_s"] < 10,
        "cpu_per_write_ratio_big_to_small": ratio(big[cpu_key], small[cpu_key]),
        "dc1_gateway_cpu_s_per_write": big["cpu_seconds_per_write_dc1_gateway"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="meshfed federation-delta benchmark (prints one JSON document)")
    parser.add_argument("--dcs", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=12)
    parser.add_argument("--only", choices=("delta", "baseline"), default=None)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--gateway-delta", choices=("on", "off"), default="on",
                        help="off: the mesh gateways re-read the whole gateway list on every change")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    started = time.monotonic()
    document: dict[str, Any] = {"benchmark": "federation_delta", "machine": machine(), "gateway_delta": args.gateway_delta}
    for mode, delta in (("baseline_no_delta", False), ("delta", True)):
        if args.only is not None and args.only != ("delta" if delta else "baseline"):
            continue
        result = run(args, delta)
        document[mode] = {"verdicts": verdicts(result, args.dcs), "meshfed": result}
    document["wall_seconds"] = round(time.monotonic() - started, 1)
    emit(document)


if __name__ == "__main__":
    main()

"""Config-entry replication, primary -> secondary through the gateways (issue #4 benchmark).

1. Lag: 200 sequential writes of a service-defaults entry into dc1, each timed until visible on a
   dc2 server; the same write's visibility on a dc1 follower is the same-run baseline.
2. Resync of 10,000 entries: load them into dc1, then time until dc2 holds all of them, with the
   dc2 leader's Raft applies (replication status) and the bytes dc2's gateway carried for dc1.
3. A new dc2 leader's full diff over those 10,000 entries: time to its first round, applies
   (must be 0: content-hash diff), bytes.

    python -m tests.bench.bench_config_replication [--writes 200] [--entries 10000] [--apply-limit 100]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from typing import Any

import aiohttp

from meshfed.server.cli.launcher import (
    ServerProcess,
    federated_datacenters,
    get_json,
    processes_of,
    start_federation,
)

from .common import emit, machine, parse_prometheus, summarize_seconds


def leader(servers: list[ServerProcess]) -> ServerProcess:
    address = get_json(servers[0].http + "/v1/status/leader")[2]
    return next(s for s in servers if s.rpc_address == address)


def gateway_bytes(admin: str) -> float:
    metrics = parse_prometheus(_text(admin + "/metrics"))
    return sum(v for k, v in metrics.items() if k.startswith("meshfed_gateway_bytes_total") and 'route="remote:dc1"' in k)


def _text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def config_status(server: ServerProcess) -> dict[str, Any]:
    types = get_json(server.http + "/v1/internal/replication")[2]["Types"]
    return next(t for t in types if t["Type"] == "config_entry")


async def lag(session: aiohttp.ClientSession, primary: str, follower: str, secondary: str, writes: int) -> dict[str, Any]:
    cross, local = [], []
    for i in range(writes):
        protocol = ("http", "grpc")[i % 2]
        async with session.put(f"{primary}/v1/config", json={"Kind": "service-defaults", "Name": "lag", "Protocol": protocol}) as r:
            assert await r.json() is True
        written = time.perf_counter()

        async def seen(base: str, sink: list[float], protocol: str = protocol, written: float = written) -> None:
            index = 1
            while True:
                async with session.get(f"{base}/v1/config/service-defaults/lag?stale&index={index}&wait=30s") as r:
                    index = int(r.headers.get("X-Consul-Index", "1"))
                    if r.status == 200 and (await r.json())["Protocol"] == protocol:
                        sink.append(time.perf_counter() - written)
                        return

        await asyncio.gather(seen(secondary, cross), seen(follower, local))
    cross_s, local_s = summarize_seconds(cross), summarize_seconds(local)
    return {"writes": writes, "cross_dc_lag": cross_s, "baseline_intra_dc_follower_lag": local_s,
            "ratio_p50": cross_s["p50_ms"] / local_s["p50_ms"] if local_s["p50_ms"] else None}


async def load(session: aiohttp.ClientSession, primary: str, count: int) -> float:
    started = time.perf_counter()
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            n = queue.pop()
            async with session.put(f"{primary}/v1/config", json={"Kind": "service-defaults", "Name": f"svc-{n:05d}",
                                                                 "Protocol": "http", "Meta": {"n": str(n)}}) as r:
                assert r.status == 200, await r.text()

    await asyncio.gather(*(worker() for _ in range(32)))
    return time.perf_counter() - started


def count_on(server: ServerProcess) -> int:
    return len(get_json(server.http + "/v1/config/service-defaults?stale", timeout=60)[2] or [])


async def run(args: argparse.Namespace, root: str) -> dict[str, Any]:
    extra = {"replication_apply_limit": args.apply_limit}
    dcs = federated_datacenters(root, ["127.0.212", "127.0.213"], extra=extra)
    processes = processes_of(dcs)
    try:
        start_federation(dcs, timeout=90)
        dc1, dc2 = dcs
        l1 = leader(dc1.servers)
        follower = next(s for s in dc1.servers if s is not l1)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            lag_result = await lag(session, l1.http, follower.http, dc2.servers[0].http, args.writes)
            bytes_before = gateway_bytes(dc2.gateway.admin)
            applies_before = config_status(leader(dc2.servers))["Applies"]
            load_seconds = await load(session, l1.http, args.entries)
        loaded = time.perf_counter()
        while count_on(dc2.servers[0]) < args.entries:
            time.sleep(1.0)
            if time.perf_counter() - loaded > 600:
                raise TimeoutError("dc2 did not catch up within 600 s")
        resync = {
            "entries": args.entries,
            "load_into_primary_seconds": load_seconds,
            "secondary_caught_up_seconds_after_load": time.perf_counter() - loaded,
            "raft_applies_on_secondary": config_status(leader(dc2.servers))["Applies"] - applies_before,
            "bytes_through_dc2_gateway": gateway_bytes(dc2.gateway.admin) - bytes_before,
            "apply_limit_per_second": args.apply_limit,
        }
        old = leader(dc2.servers)
        bytes_before = gateway_bytes(dc2.gateway.admin)
        old.kill()
        killed = time.perf_counter()
        while True:
            time.sleep(0.2)
            try:
                new = leader([s for s in dc2.servers if s.alive()])
                status = config_status(new)
            except (StopIteration, OSError, KeyError, TypeError):
                continue
            if status["Rounds"] >= 1:
                break
        election = {"first_round_seconds_after_kill": time.perf_counter() - killed, "applies": status["Applies"],
                    "bytes_through_dc2_gateway": gateway_bytes(dc2.gateway.admin) - bytes_before}
        return {"benchmark": "config_replication", "machine": machine(), "lag": lag_result,
                "resync_of_new_entries": resync, "new_leader_full_diff": election}
    finally:
        for process in processes:
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--apply-limit", type=int, default=100)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="meshfed-bench-config-")
    try:
        emit(asyncio.run(run(args, root)))
    finally:
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

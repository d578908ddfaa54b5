"""Peering visibility: a new instance of an exported service, from cluster-01 to cluster-02 (issue #11 benchmark).

Setup: two independent 3-server clusters with their own TLS CAs, peered (cluster-01 on
127.0.226.x accepts and exports socat, cluster-02 on 127.0.227.x dials and imports it), through
tests/integration/peered.py. Each sample registers one new socat instance (a new node) with
`PUT /v1/catalog/register` on cluster-01's leader and times, from the moment the write is sent:
- **peered**: `GET /v1/health/service/socat?peer=cluster-01&stale&index=N` on a cluster-02
  follower until the instance is in the answer (blocking queries, re-issued with the returned
  index); the path is cluster-01's leader -> cluster-02's leader (import) -> Raft -> follower;
- **polled**: the same read on another cluster-02 follower every 10 ms without `index`, which does
  not depend on blocking queries working for `?peer=` reads;
- **baseline**: `GET /v1/health/service/socat?stale&index=N` on a cluster-01 follower (intra-cluster
  replication plus the blocking-query wake-up), in the same run;
and the write's own acknowledgement. Samples are spaced by a random 0-0.5 s so they do not lock
onto any periodic work of the importer.

    python -m tests.bench.bench_peering_visibility [--samples 50] [--keep-data]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
from typing import Any

import aiohttp

from tests.integration.peered import ACCEPTOR_PEER, SERVICE, PeeredClusters, start_peered

from .common import emit, machine, process_memory_kib, ratio, stop_cleanly_on_sigterm, summarize_seconds

ACCEPTOR_BASE, DIALER_BASE = "127.0.226", "127.0.227"
WAIT = "10s"  # a blocking read that does not wake shows up as a ~10 s sample, not a hang


async def blocking_until(session: aiohttp.ClientSession, url: str, node: str, index: int, blocking: bool) -> int:
    """Reads `url` until `node` is in the answer: blocking reads from `index`, or polls."""
    while True:
        query = f"&index={index}&wait={WAIT}" if blocking else ""
        async with session.get(url + query) as response:
            index = int(response.headers.get("X-Consul-Index", "1"))
            if response.status == 200 and node in {row["Node"]["Node"] for row in await response.json()}:
                return index
        if not blocking:
            await asyncio.sleep(0.01)


async def measure(pair: PeeredClusters, samples: int) -> dict[str, Any]:
    rng = random.Random(1)
    leader = pair.acceptor.leader()
    local_follower = pair.acceptor.followers()[0]
    peered_follower, polled_follower = pair.dialer.followers()[:2]
    local_url = f"{local_follower.http}/v1/health/service/{SERVICE}?stale"
    peered_url = f"{peered_follower.http}/v1/health/service/{SERVICE}?peer={ACCEPTOR_PEER}&stale"
    polled_url = f"{polled_follower.http}/v1/health/service/{SERVICE}?peer={ACCEPTOR_PEER}&stale"
    results: dict[str, list[float]] = {"peered_blocking": [], "peered_polled": [], "baseline_intra_cluster": [],
                                       "write_ack": []}
    indexes = {"local": 1, "peered": 1}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for url, key in ((local_url, "local"), (peered_url, "peered")):
            async with session.get(url) as response:
                indexes[key] = int(response.headers.get("X-Consul-Index", "1"))
        for n in range(samples):
            await asyncio.sleep(rng.uniform(0, 0.5))
            node = f"bench{n}"
            body = {"Node": node, "Address": f"10.2.{n // 250}.{n % 250 + 1}",
                    "Service": {"ID": f"socat-bench{n}", "Service": SERVICE, "Port": 6000}}
            sent = time.perf_counter()

            async def seen(url: str, key: str, blocking: bool, node: str = node, sent: float = sent) -> None:
                index = await blocking_until(session, url, node, indexes.get(key, 1), blocking)
                if blocking:
                    indexes[key] = index
                results[key].append(time.perf_counter() - sent)

            async def write(body: dict[str, Any] = body, sent: float = sent) -> None:
                async with session.put(f"{leader.http}/v1/catalog/register", json=body) as response:
                    assert response.status == 200, await response.text()
                results["write_ack"].append(time.perf_counter() - sent)

            await asyncio.gather(write(), seen(local_url, "baseline_intra_cluster", True),
                                 seen(peered_url, "peered_blocking", True), seen(polled_url, "peered_polled", False))
    summaries = {key: summarize_seconds(values) for key, values in results.items()}
    baseline = summaries["baseline_intra_cluster"]
    return {
        "samples": samples,
        **summaries,
        "ratio_p50_blocking_to_baseline": ratio(summaries["peered_blocking"].get("p50_ms"), baseline.get("p50_ms")),
        "ratio_p99_blocking_to_baseline": ratio(summaries["peered_blocking"].get("p99_ms"), baseline.get("p99_ms")),
        "ratio_p50_polled_to_baseline": ratio(summaries["peered_polled"].get("p50_ms"), baseline.get("p50_ms")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    root = tempfile.mkdtemp(prefix="meshfed-bench-peering-")
    started = time.perf_counter()
    pair = start_peered(root, ACCEPTOR_BASE, DIALER_BASE)
    try:
        setup_seconds = time.perf_counter() - started
        result = asyncio.run(measure(pair, args.samples))
        leaders = {"cluster-01": pair.acceptor.leader(), "cluster-02": pair.dialer.leader()}
        emit({
            "benchmark": "peering_visibility",
            "machine": machine(),
            "setup_seconds": round(setup_seconds, 1),
            **result,
            "rss_kib": {name: process_memory_kib(s.process.pid) for name, s in leaders.items() if s.process},
        })
    finally:
        pair.stop()
        if args.keep_data:
            print(f"bench: server data and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

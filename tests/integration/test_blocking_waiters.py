"""Many blocking waiters behind a follower (issue #13, goal 2), on a real 3-server datacenter.

The 10,000-waiter benchmark (tests/bench/bench_waiters.py) in small: 300 blocking reads parked on
one follower with default consistency, then one write. Every waiter must be woken with the new
index and the new data, none may get a 5xx, and the follower must carry identical reads to the
leader on shared calls (two distinct queries here: two upstream calls, not 300).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from .harness import wait_until

WAITERS = 300


def gauges(session: Any, server: Any) -> dict[str, float]:
    text = session.get(server.http + "/metrics", timeout=5).text
    wanted = ("consul_rpc_queries_blocking", "meshfed_rpc_forwarded_blocking_callers", "meshfed_rpc_forwarded_blocking_upstream")
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            found[name] = float(value)
    return found


async def park_and_wake(dc: Any, follower: Any, leader: Any, index: int) -> list[tuple[int, int, Any]]:
    urls = [
        f"{follower.http}/v1/catalog/services?index={index}&wait=30s",
        f"{follower.http}/v1/health/service/web?index={index}&wait=30s",
    ]
    answers: list[tuple[int, int, Any]] = []

    async def wait_one(session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(url) as response:
            body = await response.json(content_type=None)
            answers.append((response.status, int(response.headers.get("X-Consul-Index", "0")), body))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        tasks = [asyncio.create_task(wait_one(session, urls[i % 2])) for i in range(WAITERS)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = await asyncio.to_thread(gauges, dc.session, follower)
            if seen.get("meshfed_rpc_forwarded_blocking_callers", 0) >= WAITERS:
                break
            await asyncio.sleep(0.1)
        follower_seen = await asyncio.to_thread(gauges, dc.session, follower)
        leader_seen = await asyncio.to_thread(gauges, dc.session, leader)
        assert follower_seen["meshfed_rpc_forwarded_blocking_callers"] == WAITERS, follower_seen
        # Two distinct queries: two calls to the leader carry all 300 waiters.
        assert follower_seen["meshfed_rpc_forwarded_blocking_upstream"] == 2, follower_seen
        assert leader_seen["consul_rpc_queries_blocking"] == 2, leader_seen
        assert not answers, f"answered before any write: {answers[:3]}"

        register = {"Node": "waiter-writer", "Address": "10.1.2.3", "Service": {"Service": "web", "Port": 80}}
        status = await asyncio.to_thread(
            lambda: dc.session.put(leader.http + "/v1/catalog/register", json=register, timeout=10).status_code
        )
        assert status == 200
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    return answers


def test_300_waiters_on_a_follower_all_woken_no_5xx_sharing_two_leader_calls(make_dc: Any) -> None:
    dc = make_dc("dc1")
    dc.start()
    leader = dc.leader()
    follower = next(s for s in dc.servers if s is not leader)
    wait_until(lambda: dc.session.get(follower.http + "/v1/catalog/services", timeout=5).status_code == 200, 10,
               what="the follower to answer forwarded reads")
    index = int(dc.session.get(follower.http + "/v1/catalog/services", timeout=5).headers["X-Consul-Index"])

    answers = asyncio.run(park_and_wake(dc, follower, leader, index))

    assert len(answers) == WAITERS
    assert [a for a in answers if a[0] != 200] == []  # no 5xx (and no other error)
    assert all(answer_index > index for _, answer_index, _ in answers)
    services = [body for _, _, body in answers if isinstance(body, dict)]
    instances = [body for _, _, body in answers if isinstance(body, list)]
    assert len(services) == len(instances) == WAITERS // 2
    assert all("web" in body for body in services)
    assert all([row["Service"]["Service"] for row in body] == ["web"] for body in instances)
    # Everyone left: nothing stays parked on either side.
    wait_until(lambda: gauges(dc.session, follower)["meshfed_rpc_forwarded_blocking_callers"] == 0, 5,
               what="the follower's waiters to drain")
    assert gauges(dc.session, leader)["consul_rpc_queries_blocking"] == 0

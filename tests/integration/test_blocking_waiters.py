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
    wanted = ("consul_rpc_queries_blocking", "meshfed_rpc_forwarded_blocking_callers", "meshfed_rpc_forwarded_blocking_upstream",
              'meshfed_shared_reads{outcome="hit"}', "meshfed_http_shared_encodings_reused")
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            found[name] = float(value)
    return found


async def wake_on_leader(dc: Any, leader: Any, index: int, waiters: int) -> list[tuple[int, int, Any]]:
    """Waiters parked on the leader itself: their reads run there, once per store version."""
    answers: list[tuple[int, int, Any]] = []
    url = f"{leader.http}/v1/health/service/web?index={index}&wait=30s"

    async def wait_one(session: aiohttp.ClientSession) -> None:
        async with session.get(url) as response:
            answers.append((response.status, int(response.headers.get("X-Consul-Index", "0")), await response.read()))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        tasks = [asyncio.create_task(wait_one(session)) for _ in range(waiters)]
        await asyncio.to_thread(wait_until, lambda: gauges(dc.session, leader)["consul_rpc_queries_blocking"] >= waiters,
                                30, what="the waiters to park on the leader")
        register = {"Node": "waiter-writer-2", "Address": "10.1.2.4", "Service": {"Service": "web", "Port": 80}}
        status = await asyncio.to_thread(
            lambda: dc.session.put(leader.http + "/v1/catalog/register", json=register, timeout=10).status_code)
        assert status == 200
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    return answers


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

    reused_before = gauges(dc.session, follower)["meshfed_http_shared_encodings_reused"]
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
    # Each shared call's answer was encoded once on the follower, not once per waiter.
    assert gauges(dc.session, follower)["meshfed_http_shared_encodings_reused"] - reused_before >= WAITERS - 2

    # On the leader: 100 waiters on one health query run it once per store version, not 100 times.
    before = gauges(dc.session, leader)
    index = int(dc.session.get(leader.http + "/v1/health/service/web", timeout=5).headers["X-Consul-Index"])
    woken = asyncio.run(wake_on_leader(dc, leader, index, 100))
    assert [a[0] for a in woken] == [200] * 100 and all(a[1] > index for a in woken)
    assert len({body for _, _, body in woken}) == 1 and b"waiter-writer-2" in woken[0][2]
    after = gauges(dc.session, leader)
    assert after['meshfed_shared_reads{outcome="hit"}'] - before['meshfed_shared_reads{outcome="hit"}'] >= 90
    assert after["meshfed_http_shared_encodings_reused"] - before["meshfed_http_shared_encodings_reused"] >= 90

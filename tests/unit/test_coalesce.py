"""Coalescer: identical forwarded blocking reads share one upstream call (issue #13, goal 2).

The rules pinned here: who may share (the key), that every sharer gets the one answer or the one
error, that a sharer leaving does not cancel the call for the others while the last one leaving
does, that a finished call is never handed to a newcomer, and the router's use of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from meshfed.rpc.codec import encode_request
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.requests.coalesce import Coalescer, coalesce_key
from meshfed.server.requests.router import Router
from tests.scaling import assert_linear, timed

from .test_router import FakeRaft, FakeState

BLOCKING = RequestHeader(min_query_index=5, max_query_time=60.0)


def key(header: RequestHeader, body: Any = None, *, method: str = "Catalog/ListServices", write: bool = False) -> Any:
    return coalesce_key("10.0.0.2:8300", method, header, encode_request(header, body), write=write)


def test_only_identical_blocking_reads_share_a_key() -> None:
    assert key(BLOCKING) == key(RequestHeader(min_query_index=5, max_query_time=60.0))
    assert key(RequestHeader()) is None  # not blocking: nothing to share
    assert key(BLOCKING, write=True) is None
    assert key(RequestHeader(min_query_index=5, request_id="r1")) is None  # a write's idempotency key
    different = [
        key(RequestHeader(min_query_index=6, max_query_time=60.0)),
        key(RequestHeader(min_query_index=5, max_query_time=30.0)),
        key(RequestHeader(min_query_index=5, max_query_time=60.0, token="other")),  # ACLs: never share
        key(RequestHeader(min_query_index=5, max_query_time=60.0, require_consistent=True)),
        key(BLOCKING, {"ServiceName": "web"}),
        key(BLOCKING, method="Health/ServiceNodes"),
    ]
    assert len({key(BLOCKING), *different}) == 1 + len(different)
    assert coalesce_key("10.0.0.3:8300", "Catalog/ListServices", BLOCKING, b"x", write=False) != coalesce_key(
        "10.0.0.2:8300", "Catalog/ListServices", BLOCKING, b"x", write=False
    )


class Upstream:
    """A call the test finishes by hand; counts starts and cancellations."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0
        self.release: asyncio.Future[str] | None = None

    async def __call__(self) -> str:
        self.started += 1
        self.release = asyncio.get_running_loop().create_future()
        try:
            return await self.release
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_concurrent_callers_share_one_call_and_all_get_its_answer() -> None:
    async def scenario() -> None:
        shared: Coalescer[str] = Coalescer()
        upstream = Upstream()
        callers = [asyncio.create_task(shared.run("k", upstream)) for _ in range(100)]
        await _settle()
        assert upstream.started == 1 and shared.in_flight() == 1
        assert upstream.release is not None
        upstream.release.set_result("answer")
        assert await asyncio.gather(*callers) == ["answer"] * 100
        assert (shared.started, shared.joined, shared.in_flight()) == (1, 99, 0)

    asyncio.run(scenario())


def test_every_sharer_gets_the_same_error() -> None:
    async def scenario() -> None:
        shared: Coalescer[str] = Coalescer()
        upstream = Upstream()
        callers = [asyncio.create_task(shared.run("k", upstream)) for _ in range(3)]
        await _settle()
        assert upstream.release is not None
        upstream.release.set_exception(RPCError(grpc.StatusCode.UNAVAILABLE, "down"))
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(r, RPCError) and r.message == "down" for r in results)
        assert shared.in_flight() == 0

    asyncio.run(scenario())


def test_one_sharer_leaving_keeps_the_call_the_last_one_cancels_it() -> None:
    async def scenario() -> None:
        shared: Coalescer[str] = Coalescer()
        upstream = Upstream()
        first = asyncio.create_task(shared.run("k", upstream))
        second = asyncio.create_task(shared.run("k", upstream))
        await _settle()
        first.cancel()
        await _settle()
        assert upstream.cancelled == 0 and not second.done()
        second.cancel()
        await _settle()
        assert upstream.cancelled == 1 and shared.in_flight() == 0
        # A newcomer after that starts afresh instead of joining the cancelled call.
        third = asyncio.create_task(shared.run("k", upstream))
        await _settle()
        assert upstream.started == 2
        assert upstream.release is not None
        upstream.release.set_result("fresh")
        assert await third == "fresh"

    asyncio.run(scenario())


def test_a_finished_call_is_not_handed_to_a_later_caller() -> None:
    async def scenario() -> None:
        shared: Coalescer[str] = Coalescer()
        upstream = Upstream()
        first = asyncio.create_task(shared.run("k", upstream))
        await _settle()
        assert upstream.release is not None
        upstream.release.set_result("old")
        assert await first == "old"
        later = asyncio.create_task(shared.run("k", upstream))
        await _settle()
        assert upstream.started == 2
        upstream.release.set_result("new")
        assert await later == "new"

    asyncio.run(scenario())


def test_no_key_runs_alone() -> None:
    async def scenario() -> None:
        shared: Coalescer[str] = Coalescer()
        upstream = Upstream()
        callers = [asyncio.create_task(shared.run(None, upstream)) for _ in range(3)]
        await _settle()
        assert upstream.started == 3 and shared.in_flight() == 0
        for task in callers:
            task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)

    asyncio.run(scenario())


class SlowPool:
    """The leader's answer arrives when the test says so; counts the calls the follower makes."""

    def __init__(self) -> None:
        self.calls = 0
        self.answer: asyncio.Future[tuple[QueryMeta, Any]] | None = None

    def drop_if_failing(self, address: str, server_name: str = "") -> bool:
        return False

    async def call(self, address: str, method: str, header: RequestHeader, body: Any, **_: Any) -> tuple[QueryMeta, Any]:
        self.calls += 1
        if self.answer is None or self.answer.done():
            self.answer = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self.answer)


async def _local() -> tuple[QueryMeta, Any]:
    raise AssertionError("a follower must forward")


@pytest.mark.parametrize("coalesce, expected_calls", [(True, 1), (False, 50)])
def test_follower_forwards_identical_blocking_reads_once(coalesce: bool, expected_calls: int) -> None:
    async def scenario() -> None:
        pool = SlowPool()
        router = Router(datacenter="dc1", raft=FakeRaft(), state=FakeState(), pool=pool, coalesce=coalesce)  # type: ignore[arg-type]
        reads = [
            asyncio.create_task(router.serve("Catalog/ListServices", BLOCKING, {}, _local, write=False)) for _ in range(50)
        ]
        await _settle()
        assert pool.calls == expected_calls
        assert router.forwarded_blocking_callers == 50
        assert router.forwarded_blocking_upstream == expected_calls
        assert pool.answer is not None
        pool.answer.set_result((QueryMeta(index=6), ["consul"]))
        answers = await asyncio.gather(*reads)
        assert {a[0].index for a in answers} == {6}
        assert (router.forwarded_blocking_callers, router.forwarded_blocking_upstream) == (0, 0)

    asyncio.run(scenario())


def test_follower_never_shares_writes() -> None:
    async def scenario() -> None:
        pool = SlowPool()
        router = Router(datacenter="dc1", raft=FakeRaft(), state=FakeState(), pool=pool)  # type: ignore[arg-type]
        header = RequestHeader(min_query_index=5, request_id="same")
        writes = [asyncio.create_task(router.serve("Catalog/Register", header, {}, _local, write=True)) for _ in range(3)]
        await _settle()
        assert pool.calls == 3
        assert pool.answer is not None
        pool.answer.set_result((QueryMeta(index=6), True))
        await asyncio.gather(*writes)

    asyncio.run(scenario())



def test_thousands_of_sharers_leaving_at_once_cost_each_the_same_however_many_they_are() -> None:
    """A client process holding 10,000 parked reads dies: every sharer is cancelled at once. With a
    shield per sharer each cancellation scanned the others' callbacks on the shared call (n²)."""

    async def leave_seconds(callers: int) -> float:
        coalescer: Coalescer[str] = Coalescer()
        never = asyncio.Event()
        cancelled = []

        async def start() -> str:
            try:
                await never.wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return "answer"

        sharers = [asyncio.ensure_future(coalescer.run("k", start)) for _ in range(callers)]
        await asyncio.sleep(0.01)
        async with timed() as watch:
            for sharer in sharers:
                sharer.cancel()
            await asyncio.gather(*sharers, return_exceptions=True)
            await asyncio.sleep(0)
        assert cancelled == [True] and coalescer.in_flight() == 0  # the last one out cancels the call
        return watch.seconds

    asyncio.run(assert_linear(leave_seconds))

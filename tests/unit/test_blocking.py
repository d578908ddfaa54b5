"""QueryRunner: Consul's blocking-query engine (reference/federation.md §3.5), with a fake leader.

The query functions here are closures over a mutable `Table` that the test changes and then
announces through the WatchHub, exactly as the Raft node does after an apply.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from meshfed.rpc.header import DEFAULT_QUERY_TIME, MAX_QUERY_TIME, RequestHeader
from meshfed.server.requests.blocking import JITTER_FRACTION, QueryRunner, wait_time
from meshfed.server.requests.watch import WatchHub


@dataclass
class FakeLeader:
    leader: bool = True
    known: bool = True
    contact: float = 0.0
    barriers: int = 0

    def is_leader(self) -> bool:
        return self.leader

    def known_leader(self) -> bool:
        return self.known

    def last_contact(self) -> float:
        return self.contact

    async def barrier(self, timeout: float = 5.0) -> int:
        self.barriers += 1
        return self.barriers


@dataclass
class Table:
    index: int = 5
    value: str | None = "v5"
    runs: int = 0
    gauge: list[int] = field(default_factory=list)

    def query(self) -> tuple[int, str | None]:
        self.runs += 1
        return self.index, self.value

    def change(self, hub: WatchHub, value: str | None, table: str = "nodes") -> None:
        self.index += 1
        self.value = value
        hub.notify([table], self.index)


def make(leader: FakeLeader | None = None) -> tuple[QueryRunner, WatchHub, Table]:
    hub = WatchHub()
    table = Table()
    runner = QueryRunner(leader or FakeLeader(), hub, on_blocking=table.gauge.append)
    return runner, hub, table


# ---- wait_time: a pure function -------------------------------------------------------------------


@given(st.one_of(st.floats(-10, 0), st.floats(0.001, 5000)), st.integers(0, 2**32))
def test_wait_time_is_clamped_and_jittered_by_less_than_a_sixteenth(requested: float, seed: int) -> None:
    waited = wait_time(requested, random.Random(seed))
    base = DEFAULT_QUERY_TIME if requested <= 0 else min(requested, MAX_QUERY_TIME)
    assert base <= waited < base + base / JITTER_FRACTION


def test_wait_time_defaults_and_cap() -> None:
    class Zero(random.Random):
        def random(self) -> float:
            return 0.0

    assert wait_time(0, Zero()) == 300.0
    assert wait_time(-1, Zero()) == 300.0
    assert wait_time(10_000, Zero()) == 600.0
    assert wait_time(2.5, Zero()) == 2.5
    assert wait_time(600, random.Random(1)) < 600 * (1 + 1 / 16)


def test_wait_time_jitter_actually_varies() -> None:
    rng = random.Random(7)
    samples = {wait_time(160, rng) for _ in range(50)}
    assert len(samples) > 40 and min(samples) >= 160 and max(samples) < 170


# ---- the engine -----------------------------------------------------------------------------------


def test_min_index_zero_runs_once_and_does_not_count_as_blocking() -> None:
    async def scenario() -> None:
        runner, _, table = make()
        meta, value = await runner.run(RequestHeader(), ["nodes"], table.query)
        assert (meta.index, value, table.runs) == (5, "v5", 1)
        assert table.gauge == []

    asyncio.run(scenario())


def test_blocking_returns_at_once_when_the_index_is_already_past() -> None:
    async def scenario() -> None:
        runner, _, table = make()
        started = time.monotonic()
        meta, value = await runner.run(RequestHeader(min_query_index=4, max_query_time=5), ["nodes"], table.query)
        assert time.monotonic() - started < 0.5
        assert (meta.index, value, table.runs) == (5, "v5", 1)

    asyncio.run(scenario())


def test_blocking_wakes_on_a_change_of_a_watched_table() -> None:
    async def scenario() -> None:
        runner, hub, table = make()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, table.change, hub, "v6")
        started = time.monotonic()
        meta, value = await runner.run(
            RequestHeader(min_query_index=5, max_query_time=10), ["nodes"], table.query
        )
        assert time.monotonic() - started < 2
        assert (meta.index, value) == (6, "v6")
        assert table.runs == 2

    asyncio.run(scenario())


def test_a_change_that_does_not_move_the_index_past_min_keeps_waiting() -> None:
    async def scenario() -> None:
        runner, hub, table = make()
        table.index = 3  # the client has seen index 5 elsewhere; index 4 is still old news
        loop = asyncio.get_running_loop()
        changes = iter(["v4", "v5", "v6"])

        def query() -> tuple[int, str | None]:
            # Each change comes after the runner has read the previous state, so a stalled event
            # loop (a loaded host) cannot fold two changes into one wake-up.
            result = table.query()
            if (upcoming := next(changes, None)) is not None:
                loop.call_later(0.02, table.change, hub, upcoming)
            return result

        meta, value = await runner.run(RequestHeader(min_query_index=5, max_query_time=5), ["nodes"], query)
        assert (meta.index, value) == (6, "v6")
        assert 4 <= table.runs <= 6  # a wake-up that is not enough re-runs under a fresh ticket
        assert hub.waiting() == 0

    asyncio.run(scenario())


def test_changes_of_unwatched_tables_do_not_rerun_the_query() -> None:
    async def scenario() -> None:
        runner, hub, table = make()
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, hub.notify, ["servers"], 99)
        meta, value = await runner.run(
            RequestHeader(min_query_index=5, max_query_time=0.2), ["nodes"], table.query
        )
        assert table.runs == 2  # the first run and the one after the timeout
        assert (meta.index, value) == (5, "v5")

    asyncio.run(scenario())


def test_times_out_with_the_unchanged_result_after_the_wait() -> None:
    async def scenario() -> None:
        runner, _, table = make()
        started = time.monotonic()
        meta, value = await runner.run(
            RequestHeader(min_query_index=5, max_query_time=0.2), ["nodes"], table.query
        )
        elapsed = time.monotonic() - started
        assert 0.2 <= elapsed < 0.2 * (1 + 1 / 16) + 1.0
        assert (meta.index, value) == (5, "v5")

    asyncio.run(scenario())


def test_wait_for_existence_ignores_index_moves_while_the_record_is_missing() -> None:
    async def scenario() -> None:
        runner, hub, table = make()
        table.value = None
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, table.change, hub, None)  # index moves, record still missing
        loop.call_later(0.1, table.change, hub, "created")
        meta, value = await runner.run(
            RequestHeader(min_query_index=5, max_query_time=5),
            ["nodes"],
            table.query,
            wait_for_existence=True,
        )
        assert (meta.index, value) == (7, "created")

    asyncio.run(scenario())


def test_without_wait_for_existence_a_deletion_ends_the_wait() -> None:
    async def scenario() -> None:
        runner, hub, table = make()
        asyncio.get_running_loop().call_later(0.02, table.change, hub, None)
        meta, value = await runner.run(RequestHeader(min_query_index=5, max_query_time=5), ["nodes"], table.query)
        assert (meta.index, value) == (6, None)

    asyncio.run(scenario())


def test_wait_for_existence_still_times_out_with_the_missing_result() -> None:
    async def scenario() -> None:
        runner, _, table = make()
        table.value = None
        meta, value = await runner.run(
            RequestHeader(min_query_index=1, max_query_time=0.1), ["nodes"], table.query, wait_for_existence=True
        )
        assert value is None and meta.index == 5

    asyncio.run(scenario())


def test_meta_index_is_never_zero_and_carries_leader_view() -> None:
    async def scenario() -> None:
        leader = FakeLeader(leader=False, known=True, contact=0.25)
        runner, _, table = make(leader)
        table.index = 0
        meta, _ = await runner.run(RequestHeader(allow_stale=True), ["nodes"], table.query)
        assert meta.index == 1
        assert meta.known_leader is True and meta.last_contact == 0.25
        assert meta.consistency_level == "stale"
        leader.known, leader.contact = False, float("inf")
        meta, _ = await runner.run(RequestHeader(), ["nodes"], table.query)
        assert meta.known_leader is False and meta.last_contact == 0.0
        assert meta.consistency_level == ""

    asyncio.run(scenario())


def test_blocking_on_index_zero_table_returns_index_one() -> None:
    """An empty table (index 0) with min index 1 must not report 0: the client would spin."""

    async def scenario() -> None:
        runner, _, table = make()
        table.index = 0
        meta, _ = await runner.run(RequestHeader(min_query_index=1, max_query_time=0.05), ["nodes"], table.query)
        assert meta.index == 1

    asyncio.run(scenario())


def test_consistent_reads_commit_a_barrier_before_each_run() -> None:
    async def scenario() -> None:
        leader = FakeLeader()
        runner, hub, table = make(leader)
        meta, _ = await runner.run(RequestHeader(require_consistent=True), ["nodes"], table.query)
        assert leader.barriers == 1 and table.runs == 1
        assert meta.consistency_level == "consistent"
        asyncio.get_running_loop().call_later(0.02, table.change, hub, "v6")
        await runner.run(RequestHeader(require_consistent=True, min_query_index=5, max_query_time=5),
                         ["nodes"], table.query)
        assert leader.barriers == 3 and table.runs == 3
        await runner.run(RequestHeader(), ["nodes"], table.query)
        assert leader.barriers == 3

    asyncio.run(scenario())


def test_a_failing_barrier_fails_the_consistent_read_before_the_query_runs() -> None:
    class NoQuorum(FakeLeader):
        async def barrier(self, timeout: float = 5.0) -> int:
            raise RuntimeError("no quorum")

    async def scenario() -> None:
        runner, _, table = make(NoQuorum())
        try:
            await runner.run(RequestHeader(require_consistent=True), ["nodes"], table.query)
        except RuntimeError:
            pass
        else:
            raise AssertionError("the barrier error was swallowed")
        assert table.runs == 0

    asyncio.run(scenario())


def test_blocking_gauge_is_balanced_on_return_timeout_and_cancellation() -> None:
    async def scenario() -> None:
        runner, hub, table = make()
        blocking = RequestHeader(min_query_index=5, max_query_time=5)
        asyncio.get_running_loop().call_later(0.02, table.change, hub, "v6")
        await runner.run(blocking, ["nodes"], table.query)
        assert table.gauge == [1, -1]
        await runner.run(RequestHeader(min_query_index=6, max_query_time=0.05), ["nodes"], table.query)
        assert table.gauge == [1, -1, 1, -1]
        waiters = [asyncio.create_task(runner.run(RequestHeader(min_query_index=6, max_query_time=5),
                                                  ["nodes"], table.query)) for _ in range(10)]
        await asyncio.sleep(0.05)
        assert sum(table.gauge) == 10
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert all(w.cancelled() for w in waiters)
        assert sum(table.gauge) == 0 and table.gauge.count(1) == 12

    asyncio.run(scenario())


def test_many_waiters_wake_together_on_one_change() -> None:
    async def scenario() -> None:
        runner, hub, table = make()
        header = RequestHeader(min_query_index=5, max_query_time=10)
        waiters = [asyncio.create_task(runner.run(header, ["nodes"], table.query)) for _ in range(500)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        table.change(hub, "v6")
        results = await asyncio.wait_for(asyncio.gather(*waiters), 2)
        assert time.monotonic() - started < 1
        assert {(meta.index, value) for meta, value in results} == {(6, "v6")}

    asyncio.run(scenario())


def test_waiters_with_one_share_key_run_the_query_once_per_store_version() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        table = Table()
        version = [0]

        def change(value: str) -> None:
            version[0] += 1
            table.index += 1
            table.value = value
            hub.notify(["nodes"], table.index)

        runner = QueryRunner(FakeLeader(), hub, store_version=lambda: version[0])
        header = RequestHeader(min_query_index=5, max_query_time=10)
        waiters = [asyncio.create_task(runner.run(header, ["nodes"], table.query, share="nodes"))
                   for _ in range(200)]
        await asyncio.sleep(0.05)
        assert table.runs == 1  # parking: one run for all 200
        change("v6")
        results = await asyncio.wait_for(asyncio.gather(*waiters), 2)
        assert table.runs == 2  # waking: one more
        assert len({id(value) for _, value in results}) == 1 and results[0][1] == "v6"
        assert hub.waiting() == 0  # woken queries that return take no new ticket, and leak none
        # without a key every query runs for itself
        await runner.run(RequestHeader(), ["nodes"], table.query)
        assert table.runs == 3

    asyncio.run(scenario())

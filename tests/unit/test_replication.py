"""Replication: the federation-state diff (hypothesis), timing maths, and the replicator loop with
in-memory twins (reference/federation.md §5.2-5.3; operators.md #9196, #7939)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.fsm.records import FederationState
from meshfed.replication.federation_states import FederationStateDelegate, diff_federation_states
from meshfed.replication.loop import TokenBucket
from meshfed.replication.replicator import BACKOFF_BASE, BACKOFF_MAX, Replicator, replication_backoff

names = st.sampled_from(["dc1", "dc2", "dc3", "dc4", "DC5"])


@st.composite
def states(draw: st.DrawFn) -> list[FederationState]:
    dcs = draw(st.lists(names, unique_by=str.lower, max_size=5))
    return [FederationState(dc, updated_at=draw(st.sampled_from(["t1", "t2"])), modify_index=draw(st.integers(1, 50)),
                            create_index=1, primary_modify_index=draw(st.integers(0, 50))) for dc in dcs]


def apply(local: Sequence[FederationState], remote: Sequence[FederationState], full: bool) -> list[FederationState]:
    diff = diff_federation_states(local, remote, full)
    result = {s.datacenter.lower(): s for s in local}
    for gone in diff.deletions:
        del result[gone.datacenter.lower()]
    for new in diff.updates:
        result[new.datacenter.lower()] = new
    return list(result.values())


@settings(max_examples=300)
@given(states(), states(), st.booleans())
def test_any_local_remote_pair_converges_in_one_round(local: list[FederationState], remote: list[FederationState],
                                                      full: bool) -> None:
    after = apply(local, remote, full)
    by_dc = {s.datacenter.lower(): s for s in after}
    assert set(by_dc) == {s.datacenter.lower() for s in remote}
    for theirs in remote:
        ours = by_dc[theirs.datacenter.lower()]
        if full:
            assert ours.is_same(theirs) and ours.updated_at == theirs.updated_at
        else:
            assert ours.primary_modify_index == theirs.modify_index
    second = diff_federation_states(after, remote, full)
    assert second.deletions == [] and second.updates == [], "a converged pair must produce no work"


@given(states())
def test_unchanged_records_are_never_rewritten(remote: list[FederationState]) -> None:
    local = [dataclasses.replace(s, primary_modify_index=s.modify_index, modify_index=s.modify_index + 100) for s in remote]
    for full in (False, True):
        diff = diff_federation_states(local, remote, full)
        assert diff.updates == [] and diff.deletions == []


def test_replicated_copy_keeps_the_primary_index_and_drops_local_ones() -> None:
    remote = [FederationState("dc2", modify_index=42, create_index=40, primary_modify_index=42)]
    (copy,) = diff_federation_states([], remote, full=False).updates
    assert (copy.primary_modify_index, copy.modify_index, copy.create_index) == (42, 0, 0)


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    rng = random.Random(1)
    assert replication_backoff(0) == 0
    for failures, base in [(1, 1), (2, 2), (3, 4), (7, 64), (8, 120), (30, 120)]:
        wait = replication_backoff(failures, rng)
        assert base <= wait <= base * 1.1
    assert replication_backoff(100, rng) <= BACKOFF_MAX * 1.1


def test_token_bucket_allows_a_burst_then_paces() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=1.0, burst=5, clock=lambda: now[0])
    assert [bucket.delay() for _ in range(5)] == [0.0] * 5
    assert bucket.delay() == 1.0
    now[0] = 10.0
    assert bucket.delay() == 0.0


class Primary:
    """In-memory twin of the primary's FederationState/List with a controllable index."""

    def __init__(self) -> None:
        self.index = 10
        self.states = [FederationState("dc1", modify_index=5), FederationState("dc2", modify_index=9)]
        self.fail = False
        self.calls: list[int] = []

    async def fetch(self, min_index: int) -> tuple[int, list[FederationState]]:
        self.calls.append(min_index)
        if self.fail:
            raise ConnectionError("primary unreachable")
        return self.index, list(self.states)


class Local:
    def __init__(self) -> None:
        self.rows: dict[str, FederationState] = {}
        self.writes: list[str] = []

    async def upsert(self, state: FederationState) -> None:
        self.rows[state.datacenter] = state
        self.writes.append(f"upsert {state.datacenter}")

    async def delete(self, datacenter: str) -> None:
        self.rows.pop(datacenter, None)
        self.writes.append(f"delete {datacenter}")


def make(primary: Primary, local: Local, events: list[object]) -> Replicator[FederationState]:
    delegate = FederationStateDelegate(primary.fetch, lambda: list(local.rows.values()), local.upsert, local.delete)
    return Replicator(delegate, rate=1000, burst=1000, apply_limit=0, on_fetch=events.append)


def test_replicator_rounds_deletions_first_then_updates_and_reports_to_the_locator() -> None:
    async def scenario() -> None:
        primary, local, events = Primary(), Local(), []
        local.rows["dc9"] = FederationState("dc9", primary_modify_index=3)
        replicator = make(primary, local, events)
        await replicator.round()
        assert local.writes == ["delete dc9", "upsert dc1", "upsert dc2"]
        assert replicator.status.last_remote_index == 10 and events == [None]
        await replicator.round()  # nothing changed upstream: nothing written
        assert len(local.writes) == 3 and primary.calls == [0, 10]
        primary.fail = True
        try:
            await replicator.round()
        except RuntimeError as exc:
            assert "primary unreachable" in str(exc)
        assert isinstance(events[-1], ConnectionError)

    asyncio.run(scenario())


def test_remote_index_going_backwards_triggers_a_full_resync() -> None:
    """operators.md #7939: a rebuilt primary restarts its indexes; compare content instead."""

    async def scenario() -> None:
        primary, local, events = Primary(), Local(), []
        replicator = make(primary, local, events)
        await replicator.round()
        primary.index = 3
        primary.states = [FederationState("dc1", modify_index=5), FederationState("dc2", modify_index=2, updated_at="new")]
        await replicator.round()
        assert local.writes[-1] == "upsert dc2" and len(local.writes) == 3
        assert replicator.status.last_remote_index == 3

    asyncio.run(scenario())


def test_failed_rounds_back_off_reset_the_index_and_recover() -> None:
    async def scenario() -> None:
        primary, local, events = Primary(), Local(), []
        replicator = make(primary, local, events)
        sleeps: list[float] = []
        original_sleep = asyncio.sleep

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) >= 3:
                primary.fail = False
            await original_sleep(0)

        primary.fail = True
        replicator = Replicator(replicator.delegate, rate=1000, burst=1000, apply_limit=0, on_fetch=events.append,
                                sleep=fake_sleep)
        task = asyncio.create_task(replicator.run())
        while replicator.status.rounds == 0:
            await original_sleep(0.001)
        task.cancel()
        assert [round(s) for s in sleeps[:3]] == [1, 2, 4]
        assert replicator.status.consecutive_failures == 0 and replicator.status.in_sync

    asyncio.run(scenario())


def test_ten_thousand_failed_rounds_back_off_capped_and_log_only_at_the_rule(caplog: pytest.LogCaptureFixture) -> None:
    """Issue #7 item 1: a primary unreachable for weeks must not crash the loop. 2**1024 s of
    backoff used to overflow a float at the 1025th failure (about 34 h in). Warnings come only at
    the 1st, 3rd and every 10th failure, and one line reports the recovery."""

    async def scenario() -> None:
        primary, local = Primary(), Local()
        primary.fail = True
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            if seconds >= BACKOFF_BASE:  # not the token bucket's pauses
                sleeps.append(seconds)
            if len(sleeps) == 10_000:
                primary.fail = False
            await asyncio.sleep(0)

        async def fetch(min_index: int) -> tuple[int, list[FederationState]]:
            await asyncio.sleep(0)  # as a long poll would, so the test sees the recovery
            return await primary.fetch(min_index)

        delegate = FederationStateDelegate(fetch, lambda: list(local.rows.values()), local.upsert, local.delete)
        # A rate no fake-timed run can exhaust: only backoffs sleep a second or more.
        replicator = Replicator(delegate, rate=1e9, burst=1000, apply_limit=0, sleep=sleep, rng=random.Random(5))
        task = asyncio.create_task(replicator.run())
        while replicator.status.rounds == 0:
            assert not task.done(), task.exception()
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert len(sleeps) == 10_000 and max(sleeps) <= BACKOFF_MAX * 1.1
        assert min(sleeps[10:]) >= BACKOFF_MAX

    with caplog.at_level(logging.INFO, logger="meshfed.replication"):
        asyncio.run(scenario())
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 2 + 1000  # 1st, 3rd, 10th, 20th ... 10,000th
    assert [r for r in caplog.records if "recovered after 10000" in r.getMessage()]


def test_a_resync_writes_each_paced_batch_of_updates_as_one_call() -> None:
    """issue #13: with `upsert_many`, a full resync of 5 DCs in batches of 2 is three writes (one
    log entry each on a real server); a batch of one and deletions keep the one-record calls."""

    async def scenario() -> None:
        primary, local = Primary(), Local()
        primary.states = [FederationState(f"dc{n}", modify_index=n) for n in range(1, 6)]
        local.rows["dc9"] = FederationState("dc9", primary_modify_index=3)

        async def upsert_many(batch: Sequence[FederationState]) -> None:
            for state in batch:
                local.rows[state.datacenter] = state
            local.writes.append("upsert_many " + ",".join(s.datacenter for s in batch))

        delegate = FederationStateDelegate(primary.fetch, lambda: list(local.rows.values()), local.upsert,
                                           local.delete, upsert_many=upsert_many)
        replicator = Replicator(delegate, rate=1000, burst=1000, apply_limit=0, apply_batch=2)
        await replicator.round()
        assert local.writes == ["delete dc9", "upsert_many dc1,dc2", "upsert_many dc3,dc4", "upsert dc5"]
        assert replicator.status.applies == 6
        assert all(local.rows[f"dc{n}"].primary_modify_index == n for n in range(1, 6))

    asyncio.run(scenario())

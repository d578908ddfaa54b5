"""The shared RoundLoop (replication/loop.py): capped backoff, the failure-logging rule, status
bookkeeping and pacing, under fake time (issue #7 item 1, issue #8 item 8)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from meshfed.replication.loop import Backoff, ReplicationStatus, RoundLoop, should_log_failure

BACKOFF = Backoff(base=1.0, cap=120.0, jitter=0.10)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_is_capped_for_any_failure_count_and_never_overflows() -> None:
    rng = random.Random(2)
    assert BACKOFF.delay(0) == 0.0
    for failures, base in [(1, 1), (2, 2), (7, 64), (8, 120), (1025, 120), (10**9, 120)]:
        assert base <= BACKOFF.delay(failures, rng) <= base * 1.1
    assert Backoff(2.0, 256.0).delay(10**6) == 256.0  # no jitter: exact


def test_logging_rule_is_first_third_and_every_tenth() -> None:
    assert [n for n in range(1, 41) if should_log_failure(n)] == [1, 3, 10, 20, 30, 40]


def test_ten_thousand_failures_then_one_recovery(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    statuses: list[tuple[int, bool]] = []
    failing = [True]

    async def round(status: ReplicationStatus) -> int:
        if failing[0]:
            raise ConnectionError("primary unreachable")
        return 42

    loop = RoundLoop("t", round, label="test loop", backoff=BACKOFF, clock=time.clock, sleep=time.sleep,
                     rng=random.Random(9), on_round=lambda s: statuses.append((s.consecutive_failures, s.in_sync)))

    async def scenario() -> None:
        for _ in range(10_000):
            assert await loop.step() is False
        failing[0] = False
        assert await loop.step() is True

    with caplog.at_level(logging.INFO, logger="meshfed.replication.loop"):
        asyncio.run(scenario())
    assert len(time.sleeps) == 10_000 and max(time.sleeps) <= 120 * 1.1
    logged = [int(r.args[1]) for r in caplog.records if r.levelno == logging.WARNING]  # type: ignore[index]
    assert logged == [1, 3] + list(range(10, 10_001, 10))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == ["test loop recovered after 10000 failures"]
    status = loop.status
    assert (status.consecutive_failures, status.in_sync, status.last_remote_index, status.rounds) == (0, True, 42, 1)
    assert status.last_error_message == "primary unreachable"
    assert len(statuses) == 10_001 and statuses[-1] == (0, True)


def test_token_bucket_paces_rounds_after_the_burst() -> None:
    time = FakeTime()

    async def round(status: ReplicationStatus) -> int:
        return 1

    loop = RoundLoop("t", round, label="t", backoff=BACKOFF, rate=0.2, burst=5, clock=time.clock, sleep=time.sleep)

    async def scenario() -> None:
        for _ in range(7):
            await loop.step()

    asyncio.run(scenario())
    assert time.sleeps == [5.0, 5.0]  # 0.2 rounds/s once the burst of 5 is spent


def test_run_marks_running_and_clears_it_when_cancelled() -> None:
    async def round(status: ReplicationStatus) -> int:
        await asyncio.sleep(0)
        return 1

    async def scenario() -> None:
        loop = RoundLoop("t", round, label="t", backoff=BACKOFF)
        loop.status.last_remote_index = 99
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0)
        assert loop.status.running and loop.status.last_remote_index == 0  # fresh each term
        while loop.status.rounds < 3:
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not loop.status.running and not loop.status.in_sync

    asyncio.run(scenario())

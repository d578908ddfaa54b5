"""TTL checks: the pure expiry decision, table-driven, and the leader's reaper loop with fakes.

The rule pinned here: a check expires one TTL after its last update, but never earlier than one
TTL after this leader took over, so an election gap does not turn healthy gateways critical.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from meshfed.fsm import CheckUpdate, Result
from meshfed.fsm.records import STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING, HealthCheck
from meshfed.server.leader import ttl as ttl_module
from meshfed.server.leader.ttl import EXPIRED_OUTPUT, expired_checks, reap_ttl_checks, ttl_seconds


def check(ttl: str = "10s", status: str = STATUS_PASSING, updated: float = 1000.0, check_id: str = "c") -> HealthCheck:
    return HealthCheck(node="gw1", check_id=check_id, status=status, type="ttl", ttl=ttl, status_updated_at=updated)


# (description, check, now, leader_since, expired?)
CASES = [
    ("fresh", check(), 1005.0, 0.0, False),
    ("just before the ttl", check(), 1009.999, 0.0, False),
    ("exactly at the ttl", check(), 1010.0, 0.0, True),
    ("long after the ttl", check(), 5000.0, 0.0, True),
    ("warning also expires", check(status=STATUS_WARNING), 1011.0, 0.0, True),
    ("critical is left alone", check(status=STATUS_CRITICAL), 9999.0, 0.0, False),
    ("new leader grants one ttl", check(updated=100.0), 1005.0, 1000.0, False),
    ("new leader's grace ends", check(updated=100.0), 1010.0, 1000.0, True),
    ("update after leader start counts", check(updated=1020.0), 1025.0, 1000.0, False),
    ("fractional ttl", check(ttl="1.5s"), 1001.4, 0.0, False),
    ("fractional ttl over", check(ttl="1.5s"), 1001.5, 0.0, True),
    ("minutes", check(ttl="1m"), 1059.0, 0.0, False),
    ("malformed ttl ignored", check(ttl="ten seconds"), 1e9, 0.0, False),
    ("negative ttl ignored", check(ttl="-5s"), 1e9, 0.0, False),
    ("zero ttl ignored", check(ttl="0s"), 1e9, 0.0, False),
    ("no ttl ignored", check(ttl=""), 1e9, 0.0, False),
    ("never updated, new leader grace", check(updated=0.0), 1009.0, 1000.0, False),
    ("never updated, after grace", check(updated=0.0), 1010.0, 1000.0, True),
]


@pytest.mark.parametrize("what, one_check, now, leader_since, expired", CASES, ids=[c[0] for c in CASES])
def test_expired_checks(what: str, one_check: HealthCheck, now: float, leader_since: float, expired: bool) -> None:
    assert expired_checks([one_check], now, leader_since) == ([one_check] if expired else [])


def test_expired_checks_keeps_order_and_filters_a_mix() -> None:
    checks = [
        check(check_id="a", updated=0.0),
        check(check_id="b", updated=995.0),
        check(check_id="c", updated=0.0, status=STATUS_CRITICAL),
        check(check_id="d", updated=0.0, ttl="junk"),
        check(check_id="e", updated=1.0),
    ]
    assert [c.check_id for c in expired_checks(checks, 1000.0, 0.0)] == ["a", "e"]


def test_ttl_seconds() -> None:
    assert ttl_seconds(check(ttl="250ms")) == 0.25
    assert ttl_seconds(check(ttl="1h")) == 3600
    assert ttl_seconds(check(ttl="")) is None
    assert ttl_seconds(check(ttl="0")) is None
    assert ttl_seconds(check(ttl="5")) is None  # Go durations need a unit


@dataclass
class FakeState:
    checks: list[HealthCheck]

    def checks_of_type(self, check_type: str) -> list[HealthCheck]:
        assert check_type == "ttl"
        return list(self.checks)


@dataclass
class FakeRaft:
    """Applies CheckUpdate to the fake state, so the next scan sees the check critical."""

    state: FakeState
    applied: list[Any] = field(default_factory=list)

    async def apply(self, commands: list[tuple[str, Any]], timeout: float = 5.0) -> list[Result]:
        self.applied.extend(command for _, command in commands)
        for _, command in commands:
            self.state.checks = [
                dataclasses.replace(c, status=command.status) if c.check_id == command.check_id else c
                for c in self.state.checks
            ]
        return [Result(ok=True) for _ in commands]


def test_reaper_marks_an_expired_check_critical_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ttl_module, "SCAN_INTERVAL", 0.005)
    now = [2000.0]
    state = FakeState([check(check_id="old", updated=0.0), check(check_id="fresh", updated=2000.0)])
    raft = FakeRaft(state)
    expired: list[None] = []

    async def scenario() -> None:
        reaper = asyncio.create_task(reap_ttl_checks(state, raft, lambda: expired.append(None), clock=lambda: now[0]))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert raft.applied == []  # the new leader's grace period covers the stale check too
        now[0] = 2010.0
        await asyncio.sleep(0.05)
        reaper.cancel()
        await asyncio.gather(reaper, return_exceptions=True)

    asyncio.run(scenario())
    assert len(raft.applied) == 2 and len(expired) == 2
    assert all(isinstance(c, CheckUpdate) for c in raft.applied)
    assert {(c.check_id, c.status, c.output, c.at) for c in raft.applied} == {
        ("old", STATUS_CRITICAL, EXPIRED_OUTPUT, 2010.0),
        ("fresh", STATUS_CRITICAL, EXPIRED_OUTPUT, 2010.0),
    }

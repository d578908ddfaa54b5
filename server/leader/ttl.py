"""TTL health checks: the leader marks a check critical when its TTL passes without an update.

meshfed has no client agents, so the servers own TTL checks (the mesh gateway heartbeats
`PUT /v1/agent/check/pass/<id>`). Expiry is decided by the leader only, from the check's
`status_updated_at` (set by the command that last updated it), never earlier than one TTL after
this leader took over: a new leader does not punish gateways for the election gap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from meshfed.fsm import CheckUpdate
from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.fsm.records import STATUS_CRITICAL, HealthCheck
from meshfed.fsm.state import StateStore
from meshfed.server.raft import RaftNode

log = logging.getLogger(__name__)

SCAN_INTERVAL = 1.0
EXPIRED_OUTPUT = "TTL expired"


def ttl_seconds(check: HealthCheck) -> float | None:
    """None when the check has no usable TTL: a zero TTL would expire the check on every scan
    (Consul treats only TTL > 0 as a TTL check), and a malformed one must not crash the reaper."""
    try:
        ttl = parse_duration(check.ttl) if check.ttl else 0.0
    except ValueError:
        return None
    return ttl if ttl > 0 else None


def expired_checks(checks: Iterable[HealthCheck], now: float, leader_since: float) -> list[HealthCheck]:
    """Pure decision: TTL checks that are not critical and whose TTL has run out."""
    expired = []
    for check in checks:
        ttl = ttl_seconds(check)
        if ttl is None or check.status == STATUS_CRITICAL:
            continue
        if now >= max(check.status_updated_at, leader_since) + ttl:
            expired.append(check)
    return expired


async def reap_ttl_checks(
    state: StateStore,
    raft: RaftNode,
    on_expired: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    leader_since = clock()
    while True:
        for check in expired_checks(state.checks_of_type("ttl"), clock(), leader_since):
            command = CheckUpdate(
                node=check.node, check_id=check.check_id, status=STATUS_CRITICAL, output=EXPIRED_OUTPUT, at=clock()
            )
            (result,) = await raft.apply([("", command)])
            if result.ok:
                log.info("TTL check %s on %s expired: marked critical", check.check_id, check.node)
                if on_expired:
                    on_expired()
        await asyncio.sleep(SCAN_INTERVAL)

"""Pruning of federation states, primary leader only (DESIGN §8, replacing Consul's serf rule).

Every secondary's anti-entropy re-asserts its record at least every
`federation_state_refresh_interval`. A record whose `UpdatedAt` is older than
`federation_state_ttl` belongs to a datacenter that is gone: the primary deletes it, and the
deletion replicates. The primary's own record is never pruned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from meshfed.fsm import FederationStateDelete
from meshfed.fsm.consul_formats.timestamps import parse_rfc3339 as parse_time
from meshfed.fsm.records import FederationState
from meshfed.fsm.state import StateStore
from meshfed.server.raft import RaftNode

log = logging.getLogger(__name__)


def parse_rfc3339(text: str) -> float | None:
    if not text:
        return None
    try:
        return parse_time(text).timestamp()
    except ValueError:
        return None


def expired_states(states: Iterable[FederationState], own_datacenter: str, now: float, ttl: float) -> list[str]:
    """Pure decision: datacenters whose record was not refreshed within `ttl` seconds."""
    expired = []
    for state in states:
        if state.datacenter.lower() == own_datacenter.lower():
            continue
        updated = parse_rfc3339(state.updated_at)
        if updated is not None and now - updated > ttl:
            expired.append(state.datacenter)
    return expired


def prune_interval(ttl: float) -> float:
    """Check often enough to prune within ~10 % of the TTL, but at most hourly and at least every second."""
    return min(3600.0, max(1.0, ttl / 10))


async def prune_federation_states(
    datacenter: str, state: StateStore, raft: RaftNode, ttl: float, clock: Callable[[], float]
) -> None:
    while True:
        await asyncio.sleep(prune_interval(ttl))
        _, states = state.federation_state_list()
        for name in expired_states(states, datacenter, clock(), ttl):
            (result,) = await raft.apply([("", FederationStateDelete(name))])
            if result.ok:
                log.warning("pruned federation state of %s: not refreshed for %.0fs", name, ttl)
            else:
                log.error("failed to prune federation state %s: %s", name, result.error)
                break

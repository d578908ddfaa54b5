"""Autopilot's dead-server cleanup, run by the leader when `CleanupDeadServers` is on.

Conservative by design (issue #12): one removal per scan; only a member the leader has not heard
from for longer than `ServerStabilizationTime` (and never sooner than that after this leader took
over, so the election gap does not count); never below `MinQuorum` voters; and the Raft adapter
refuses any removal after which the live voters would not be a majority (RaftNode.remove_server).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from meshfed.fsm.records import AutopilotConfig
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError
from meshfed.server.raft import MembershipError, PeerHealth, RaftError, RaftNode

log = logging.getLogger(__name__)

SCAN_INTERVAL = 1.0
# Never faster than this, whatever ServerStabilizationTime says: a restart or a GC pause is not death.
MIN_DEAD_FOR = 5.0


def dead_server_to_remove(config: AutopilotConfig, members: Sequence[str], health: Mapping[str, PeerHealth],
                          leader_for: float) -> str | None:
    """Pure decision: the one member to remove now, or None."""
    if not config.cleanup_dead_servers or len(members) - 1 < max(config.min_quorum, 1):
        return None
    dead_for = max(config.server_stabilization_time, MIN_DEAD_FOR)
    if leader_for < dead_for:
        return None
    for address in sorted(members):
        peer = health.get(address)
        if peer is None or peer.alive:
            continue
        silent = leader_for if peer.last_contact is None else peer.last_contact
        if silent >= dead_for:
            return address
    return None


async def clean_up_dead_servers(state: StateStore, raft: RaftNode, clock: Callable[[], float] = time.monotonic) -> None:
    leader_since = clock()
    while True:
        _, config = state.autopilot_config()
        target = dead_server_to_remove(config, raft.members(), raft.peer_health(), clock() - leader_since)
        if target is not None:
            try:
                await raft.remove_server(target)
                log.info("autopilot: removed dead server %s", target)
            except (MembershipError, RaftError, RPCError) as exc:
                log.warning("autopilot: not removing dead server %s: %s", target, exc)
        await asyncio.sleep(SCAN_INTERVAL)

"""What a `RaftNode` (node.py) reports about itself and its peers: leadership, leader contact,
peer health, the status shape and the fault counters. Kept apart so node.py holds the node's
life and its proposals; everything here only reads, from any thread.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from meshfed.server.raft.transport import FrameStats
from meshfed.server.raft.types import PeerHealth, RaftStatus

if TYPE_CHECKING:
    from meshfed.server.raft.durability import JournalGuard
    from meshfed.server.raft.syncobj import GuardedSyncObj


class NodeStatus:
    """Mixed into RaftNode (first, so these are the methods MembershipOps' declarations name),
    which provides the attributes declared here."""

    self_address: str
    failed_after: float
    snapshot_index: int
    snapshot_bytes: int
    _snapshot_time: float
    _tick_errors: int
    _sync: GuardedSyncObj
    _guard: JournalGuard

    def is_leader(self) -> bool:
        return bool(self._sync._isLeader())

    def leader(self) -> str | None:
        leader = self._sync._getLeader()
        return None if leader is None else str(getattr(leader, "id", leader))

    def last_contact(self) -> float:
        """Seconds since this node last heard from a leader (0 when it is the leader)."""
        if self.is_leader():
            return 0.0
        contact = self._sync.meshfed_last_leader_contact
        return float("inf") if contact == 0 else time.monotonic() - contact

    def known_leader(self) -> bool:
        return self.leader() is not None

    def peer_health(self) -> dict[str, PeerHealth]:
        """Every member by Raft address. A peer is alive while its connection is up and it spoke
        within `failed_after` (heartbeats answer every `timings.heartbeat`): a killed or cut-off
        server turns failed within seconds, as serf reports it to Consul operators."""
        now = time.monotonic()
        sync = self._sync
        leading = self.is_leader()
        matched = dict(sync._SyncObj__raftMatchIndex) if leading else {}
        health = {self.self_address: PeerHealth(True, 0.0, int(sync._SyncObj__getCurrentLogIndex()))}
        for address, node in self._peer_nodes():
            heard = self._sync.meshfed_peer_contact.get(address)
            age = None if heard is None else now - heard
            alive = bool(self._sync.isNodeConnected(node)) and age is not None and age < self.failed_after
            health[address] = PeerHealth(alive, age, int(matched.get(node, 0)) if leading else None)
        return health

    def status(self) -> RaftStatus:
        sync = self._sync
        state_code = sync._SyncObj__raftState
        peers = {p: bool(sync.isNodeConnected(node)) for p, node in self._peer_nodes()}
        return RaftStatus(
            state={0: "follower", 1: "candidate", 2: "leader"}.get(state_code, "follower"),
            leader=self.leader(),
            term=sync.raftCurrentTerm,
            commit_index=sync.raftCommitIndex,
            last_applied=sync.raftLastApplied,
            has_quorum=bool(sync.hasQuorum) if self.is_leader() else self.known_leader(),
            last_contact=self.last_contact(),
            peers_connected=peers,
            log_entries=sync._getRaftLogSize(),
            snapshot_index=self.snapshot_index,
            snapshot_bytes=self.snapshot_bytes,
            snapshot_age=time.monotonic() - self._snapshot_time,
        )

    def _peer_nodes(self) -> list[tuple[str, Any]]:
        return [(str(node.id), node) for node in self._sync.otherNodes]

    @property
    def tick_errors(self) -> int:
        return self._tick_errors

    @property
    def resends_kept(self) -> int:
        """AppendEntries re-sends whose already-held entries the log-matching guard kept
        (server/raft/log_matching.py); each one is a write PySyncObj alone would have put at risk."""
        return int(self._sync.meshfed_rewritten_appends)

    @staticmethod
    def oversized_frames() -> int:
        """Raft-port connections dropped because they declared a frame larger than any peer sends."""
        return FrameStats.oversized

    @property
    def disk_full(self) -> bool:
        return self._guard.disk_full

    @property
    def disk_full_refusals(self) -> int:
        return self._guard.disk_full_refusals

    @property
    def elections_started(self) -> int:
        """Elections this server stood in since start (more than one per failover: split votes)."""
        return int(self._sync.meshfed_elections_started)

    @property
    def journal_syncs(self) -> int:
        return self._guard.syncs

    def force_snapshot(self) -> None:
        self._sync.forceLogCompaction()


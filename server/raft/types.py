"""What the rest of the server sees of Raft besides `RaftNode` itself: the timeouts it is
configured with, the error a proposal fails with, and the shapes of its status and member health.

Kept apart from the node so that callers (the agent, the router, the endpoint ports) can name
these without reading the adapter, and so the adapter file holds only the node.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RaftTimings:
    """Raft timeouts in seconds. `scaled(n)` mirrors Consul's performance.raft_multiplier."""

    election_min: float = 0.2
    election_max: float = 0.5
    heartbeat: float = 0.05
    leader_fallback: float = 0.6
    connection_timeout: float = 1.0
    connection_retry: float = 0.2

    def scaled(self, multiplier: int) -> RaftTimings:
        m = max(1, multiplier)
        return RaftTimings(
            self.election_min * m,
            self.election_max * m,
            self.heartbeat * m,
            self.leader_fallback * m,
            max(self.connection_timeout, self.election_max * m),
            self.connection_retry,
        )


class RaftError(Exception):
    """A proposal failed. `maybe_applied` means the outcome is unknown: retry with the same request id."""

    def __init__(self, message: str, maybe_applied: bool, disk_full: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied
        self.disk_full = disk_full  # refused before proposing: the journal could not grow


@dataclass(frozen=True)
class PeerHealth:
    """A Raft member as this node knows it. Only the leader hears from every member (each answers
    its heartbeats), so only the leader's view says whether a follower is alive."""

    alive: bool
    last_contact: float | None  # seconds since its last message; None when never heard from
    # The last log index known to be on that member: its match index on the leader (this node's
    # own last index for itself); None where this node does not track it (on a follower).
    last_index: int | None = None


@dataclass
class RaftStatus:
    state: str  # "leader" | "follower" | "candidate"
    leader: str | None  # raft address of the known leader
    term: int
    commit_index: int
    last_applied: int
    has_quorum: bool
    last_contact: float  # seconds since the last message from the leader (0 on the leader)
    peers_connected: dict[str, bool]
    log_entries: int
    snapshot_index: int
    snapshot_bytes: int
    snapshot_age: float


class MembershipError(Exception):
    """A membership change or leadership transfer refused, with the reason for the operator
    (a lost majority, an unknown member, a target not caught up). Never a server fault."""

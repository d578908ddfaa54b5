"""Raft for meshfed: the only package that imports PySyncObj (see node.py and storage.py);
types.py holds what callers name besides the node (timings, errors, status shapes)."""

from meshfed.server.raft.membership import JoinError, failure_tolerance, quorum
from meshfed.server.raft.node import RaftNode
from meshfed.server.raft.types import MembershipError, PeerHealth, RaftError, RaftStatus, RaftTimings

__all__ = ["JoinError", "MembershipError", "PeerHealth", "RaftError", "RaftNode", "RaftStatus", "RaftTimings",
           "failure_tolerance", "quorum"]

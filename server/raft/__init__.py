"""Raft for meshfed: the only package that imports PySyncObj (see node.py and storage.py);
types.py holds what callers name besides the node (timings, errors, status shapes)."""

from meshfed.server.raft.node import RaftNode
from meshfed.server.raft.types import PeerHealth, RaftError, RaftStatus, RaftTimings

__all__ = ["PeerHealth", "RaftError", "RaftNode", "RaftStatus", "RaftTimings"]

"""Raft for meshfed: the only package that imports PySyncObj (see node.py and storage.py)."""

from meshfed.server.raft.node import PeerHealth, RaftError, RaftNode, RaftStatus, RaftTimings

__all__ = ["PeerHealth", "RaftError", "RaftNode", "RaftStatus", "RaftTimings"]

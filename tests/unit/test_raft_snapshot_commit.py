"""A snapshot chunk never commits a follower's own unmatched entries (the paused-leader loss).

The case, as the write traces of the leader-pause fault run showed it: a leader (term 2) appends
client writes it has not yet committed and is paused. The others elect a leader (term 3), which
commits other entries at those indexes and compacts its log, so when the old leader resumes the
new one ships it a snapshot. Each chunk carries the new leader's commit index and no
`prevLogIdx`; PySyncObj still applies `min(leaderCommit, own last index)` and so commits the old
leader's term-2 tail, answering the waiting proposals with success. The last chunk then replaces
the state without them.

The library's real handlers run on a node that is not started (no tick thread), with the transport
replaced by a list of sent messages, as in test_raft_log_matching.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pysyncobj import SyncObj
from pysyncobj.config import FAIL_REASON
from pysyncobj.syncobj import _COMMAND_TYPE

from meshfed.fsm import StateMachine
from meshfed.server.raft import RaftNode
from meshfed.server.raft import storage as raft_storage
from meshfed.server.raft.log_matching import plan_unanchored
from tests.ports import free_ports

KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU="
NOOP = bytes([_COMMAND_TYPE.NO_OP])  # entries the library applies without a consumer


def chunk(data: bytes, first: bool, last: bool, commit: int = 60) -> dict[str, Any]:
    """What PySyncObj's leader sends a follower whose next entry it has compacted away."""
    return {"type": "append_entries", "term": 3, "commit_index": commit, "serialized": (data, first, last)}


# ---- the pure rule ----------------------------------------------------------------------------


def test_a_snapshot_chunk_does_not_advance_the_commit_index() -> None:
    plan = plan_unanchored(chunk(b"x", True, False, commit=60), commit_index=1)
    assert plan.message["commit_index"] == 1


def test_anchored_messages_and_stale_commit_indexes_pass_unchanged() -> None:
    anchored = {"type": "append_entries", "term": 3, "commit_index": 60, "prevLogIdx": 6, "prevLogTerm": 2}
    behind = chunk(b"x", True, False, commit=1)
    for message in (anchored, behind):
        assert plan_unanchored(message, commit_index=4).message is message


# ---- inside PySyncObj's follower handler --------------------------------------------------------


@pytest.fixture
def old_leader(tmp_path: Any) -> Iterator[tuple[SyncObj, list[tuple[Any, int]]]]:
    """A node in term 2 holding entries 2..6 of term 2, committed up to 1, with its own proposal
    waiting at index 5: an old leader that was paused before it could commit them."""
    port, leader_port = free_ports(2)
    node = RaftNode(self_address=f"127.0.0.1:{port}", peers=[f"127.0.0.1:{leader_port}"], machine=StateMachine(),
                    cluster_key=KEY, data_dir=str(tmp_path))
    sync = node._sync
    sync._SyncObj__transport.send = lambda _node, message: True
    sync._SyncObj__setCurrentTerm(2, None)
    for index in range(2, 7):  # the library's log starts with its own entry at index 1, term 0
        sync._SyncObj__raftLog.add(NOOP, index, 2)
    answers: list[tuple[Any, int]] = []
    sync._SyncObj__commandsWaitingCommit[5].append((2, lambda result, error: answers.append((result, error))))
    try:
        yield sync, answers
    finally:
        sync.destroy()


def deliver(sync: SyncObj, message: dict[str, Any], handler: Any) -> None:
    leader = next(iter(sync.otherNodes))
    handler(sync, leader, message)


def test_plain_pysyncobj_commits_the_unmatched_tail_on_a_snapshot_chunk(old_leader: Any) -> None:
    """Pins the upstream behaviour that acknowledged writes nobody kept."""
    sync, answers = old_leader
    deliver(sync, chunk(b"part", True, False), SyncObj._SyncObj__onMessageReceived)
    assert sync.raftCommitIndex == 6
    sync._SyncObj__applyLogEntries()
    assert answers == [(None, FAIL_REASON.SUCCESS)]  # the client hears "true" for an entry no one keeps


def test_a_snapshot_chunk_leaves_the_old_leaders_tail_uncommitted(old_leader: Any) -> None:
    sync, answers = old_leader
    deliver(sync, chunk(b"part", True, False), type(sync)._SyncObj__onMessageReceived)
    assert sync.raftCommitIndex == 1
    sync._SyncObj__applyLogEntries()
    assert answers == []


def test_the_installed_snapshot_is_committed_and_answers_the_waiting_proposal(old_leader: Any, tmp_path: Any) -> None:
    """After the last chunk the node stands at the snapshot: committed and applied up to its last
    index, and the proposal it covers hears that its outcome is unknown (its caller retries with
    the same request id, which the state machine's dedupe window answers if it did commit)."""
    sync, answers = old_leader
    blob_path = tmp_path / "leader-snapshot"
    last, prev = (NOOP, 40, 3), (NOOP, 39, 3)
    raft_storage.write_snapshot(str(blob_path), StateMachine().snapshot_data(), last, prev, [])
    handler = type(sync)._SyncObj__onMessageReceived
    deliver(sync, chunk(blob_path.read_bytes(), True, False), handler)
    deliver(sync, chunk(b"", False, True), handler)
    assert (sync.raftCommitIndex, sync.raftLastApplied) == (40, 40)
    assert [entry[1:] for entry in sync._SyncObj__raftLog[:]] == [(39, 3), (40, 3)]
    assert answers == [(None, FAIL_REASON.UNKNOWN_OUTCOME)]

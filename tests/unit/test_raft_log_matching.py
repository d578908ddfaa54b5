"""A follower never drops entries it has acknowledged to the current leader (Raft §5.3 log matching).

The pure rule is checked on its own, then inside PySyncObj's real follower handler: a node (not
started, so no tick thread races the test) receives the AppendEntries a leader sends and the test
reads its log and the reply it would have sent. The plain-library case pins the upstream behaviour
that lost acknowledged writes in the paused-leader fault runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pysyncobj import SyncObj

from meshfed.fsm import StateMachine
from meshfed.server.raft import RaftNode
from meshfed.server.raft.log_matching import plan_append
from tests.ports import free_ports

KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU="


def log_of(*terms: int) -> dict[int, int]:
    """Index -> term for a log holding indexes 1..len(terms)."""
    return dict(enumerate(terms, start=1))


def append(prev: int, prev_term: int, entries: list[tuple[int, int]], commit: int = 0) -> dict[str, Any]:
    return {
        "type": "append_entries", "term": 2, "commit_index": commit, "prevLogIdx": prev, "prevLogTerm": prev_term,
        "entries": [(b"c%d" % i, i, t) for i, t in entries],
    }


# ---- the pure rule ----------------------------------------------------------------------------


def test_a_shorter_resend_keeps_the_acknowledged_tail_and_caps_ack_and_commit() -> None:
    log = log_of(1, 1, 2, 2, 2, 2)
    plan = plan_append(append(2, 1, [(3, 2), (4, 2)], commit=6), log.get, 6)
    assert plan.message["entries"] == []
    assert (plan.message["prevLogIdx"], plan.message["prevLogTerm"]) == (6, 2)  # nothing after it to delete
    assert plan.ack_cap == 5  # entries 5 and 6 were not in this message: not claimed as matching
    assert plan.message["commit_index"] == 4


def test_only_the_conflicting_suffix_is_replaced() -> None:
    log = log_of(1, 1, 1, 1)  # 3 and 4 from an old leader
    plan = plan_append(append(1, 1, [(2, 1), (3, 2), (4, 2)]), log.get, 4)
    assert (plan.message["prevLogIdx"], plan.message["prevLogTerm"]) == (2, 1)
    assert [e[1] for e in plan.message["entries"]] == [3, 4]
    assert plan.ack_cap is None


def test_messages_the_library_already_handles_right_pass_unchanged() -> None:
    log = log_of(1, 1, 2)
    heartbeat_at_tip = append(3, 2, [])
    new_entries = append(3, 2, [(4, 2)])
    mismatch = append(3, 1, [(4, 2)])
    missing_prev = append(9, 2, [])
    for message in (heartbeat_at_tip, new_entries, mismatch, missing_prev):
        assert plan_append(message, log.get, 3).message is message


# ---- inside PySyncObj's follower handler --------------------------------------------------------


@pytest.fixture
def follower() -> Iterator[tuple[SyncObj, list[dict[str, Any]]]]:
    port, leader_port = free_ports(2)
    node = RaftNode(self_address=f"127.0.0.1:{port}", peers=[f"127.0.0.1:{leader_port}"], machine=StateMachine(),
                    cluster_key=KEY, data_dir=None)
    sync = node._sync
    sent: list[dict[str, Any]] = []
    sync._SyncObj__transport.send = lambda _node, message: sent.append(message) or True
    sync._SyncObj__setCurrentTerm(2, None)
    for index in range(2, 7):  # the library's log starts with its own entry at index 1, term 0
        sync._SyncObj__raftLog.add(b"c%d" % index, index, 2)
    try:
        yield sync, sent
    finally:
        sync.destroy()


def deliver(sync: SyncObj, message: dict[str, Any], handler: Any) -> None:
    leader = next(iter(sync.otherNodes))
    handler(sync, leader, message)


def last_index(sync: SyncObj) -> int:
    return int(sync._SyncObj__raftLog[-1][1])


def test_follower_keeps_entries_it_acknowledged_when_the_leader_resends_fewer(follower: Any) -> None:
    sync, sent = follower
    deliver(sync, append(2, 2, [(3, 2), (4, 2)], commit=6), type(sync)._SyncObj__onMessageReceived)
    assert last_index(sync) == 6
    assert sent[-1]["next_node_idx"] == 5 and sent[-1]["success"]
    assert sync.raftCommitIndex == 4


def test_plain_pysyncobj_drops_them_which_is_why_the_guard_exists(follower: Any) -> None:
    sync, sent = follower
    deliver(sync, append(2, 2, [(3, 2), (4, 2)], commit=6), SyncObj._SyncObj__onMessageReceived)
    assert last_index(sync) == 4  # entries 5 and 6, acknowledged before, are gone


def test_a_snapshot_over_a_waiting_proposal_answers_it_instead_of_leaving_it_hanging(follower: Any) -> None:
    from pysyncobj.config import FAIL_REASON

    sync, _ = follower
    answers: list[tuple[Any, int]] = []
    sync._SyncObj__commandsWaitingCommit[5].append((1, lambda result, error: answers.append((result, error))))
    sync._SyncObj__commandsWaitingCommit[9].append((1, lambda result, error: answers.append((result, error))))
    sync._fail_callbacks_covered_by_snapshot(7)
    assert answers == [(None, FAIL_REASON.UNKNOWN_OUTCOME)]  # index 9 is past the snapshot: still waits
    assert list(sync._SyncObj__commandsWaitingCommit) == [9]

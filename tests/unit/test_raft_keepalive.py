"""Follower-to-follower links stay fresh, so the first vote request after a leader dies arrives.

PySyncObj closes a link on send when nothing was read from it for `connectionTimeout`, and drops
the message. Followers never talk to each other, so in a steady cluster their link is always
stale; the first candidate's RequestVote was lost and only a second election round (another
0.2-0.5 s) elected a leader: failover took ~0.7 s p50 and ~1.1 s p99 (bench_failover). Each
non-leader now sends a small keepalive to every other server a few times per connection timeout.

The library's real handlers run on a node that is not started (no tick thread), with the transport
replaced by a list of sent messages, as in test_raft_log_matching.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pysyncobj import SyncObj

from meshfed.fsm import StateMachine
from meshfed.server.raft import RaftNode
from meshfed.server.raft.syncobj import KEEPALIVE
from tests.ports import free_ports

KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU="


@pytest.fixture
def follower(tmp_path: Any) -> Iterator[tuple[SyncObj, list[tuple[Any, dict[str, Any]]]]]:
    ports = free_ports(3)
    node = RaftNode(self_address=f"127.0.0.1:{ports[0]}", peers=[f"127.0.0.1:{p}" for p in ports[1:]],
                    machine=StateMachine(), cluster_key=KEY, data_dir=str(tmp_path))
    sync = node._sync
    sent: list[tuple[Any, dict[str, Any]]] = []
    sync._SyncObj__transport.send = lambda peer, message: sent.append((peer, message)) or True
    try:
        yield sync, sent
    finally:
        sync.destroy()


def test_a_follower_keeps_every_link_fresh_a_few_times_per_connection_timeout(follower: Any) -> None:
    sync, sent = follower
    timeout = sync._SyncObj__conf.connectionTimeout
    sync.meshfed_keepalive(now=100.0)
    assert sorted(str(peer.id) for peer, _ in sent) == sorted(str(n.id) for n in sync._SyncObj__otherNodes)
    assert all(message == {"type": KEEPALIVE} for _, message in sent)

    sent.clear()
    sync.meshfed_keepalive(now=100.0 + timeout / 10)  # too soon: nothing
    assert sent == []
    sync.meshfed_keepalive(now=100.0 + timeout / 2)  # well before the link would go stale
    assert len(sent) == 2


def test_a_leader_sends_no_keepalive_its_heartbeats_do_that(follower: Any) -> None:
    sync, sent = follower
    sync._SyncObj__onBecomeLeader()
    sent.clear()
    sync.meshfed_keepalive(now=100.0)
    assert sent == []


def test_a_received_keepalive_never_reaches_raft(follower: Any) -> None:
    sync, _ = follower
    peer = next(iter(sync._SyncObj__otherNodes))
    term, leader_contact = sync.raftCurrentTerm, sync.meshfed_last_leader_contact
    sync._SyncObj__onMessageReceived(peer, {"type": KEEPALIVE})
    assert sync.raftCurrentTerm == term
    assert sync.meshfed_last_leader_contact == leader_contact  # not mistaken for the leader's heartbeat


def test_every_election_this_server_stands_in_is_counted(follower: Any) -> None:
    """A failover that needs more than one election (a split vote) shows as more than one
    `meshfed_raft_elections_started` on the survivors: the signal bench_failover found the slow
    rounds by, and the one an operator watches for election storms. The library reports no state
    change when a candidate stands again in the next term, so the count comes from the term
    change in which this server votes for itself."""
    sync, _ = follower
    me = sync._SyncObj__selfNode.id
    other = next(iter(sync._SyncObj__otherNodes)).id
    assert sync.meshfed_elections_started == 0
    sync._SyncObj__setCurrentTerm(sync.raftCurrentTerm + 1, me)  # stands in an election
    sync._SyncObj__setCurrentTerm(sync.raftCurrentTerm + 1, me)  # split vote: stands again
    sync._SyncObj__setCurrentTerm(sync.raftCurrentTerm + 1, other)  # votes for another: not its election
    sync._SyncObj__setCurrentTerm(sync.raftCurrentTerm, me)  # same term: not a new election
    assert sync.meshfed_elections_started == 2


def test_a_quiet_start_is_measured_on_the_library_s_clock(tmp_path: Any) -> None:
    """PySyncObj keeps its deadlines on CLOCK_MONOTONIC_RAW, not time.monotonic's clock (on this
    host they differ by ~0.1 s, and the gap drifts): a deadline we set must use its clock."""
    from pysyncobj.monotonic import monotonic as library_clock

    ports = free_ports(3)
    node = RaftNode(self_address=f"127.0.0.1:{ports[0]}", peers=[f"127.0.0.1:{p}" for p in ports[1:]],
                    machine=StateMachine(), cluster_key=KEY, data_dir=str(tmp_path), quiet_start=3.0)
    try:
        assert abs(node._sync._SyncObj__raftElectionDeadline - library_clock() - 3.0) < 0.05
    finally:
        node._sync.destroy()


def test_a_follower_wakes_at_its_own_election_deadline_not_on_the_shared_tick() -> None:
    """Followers' 50 ms polls are phase-locked to the leader's heartbeats, so after the leader died
    both checked their deadlines at the same instants: two deadlines in the same 50 ms slot made
    two candidates in the same millisecond, a split vote, and another election timeout (a fifth
    of failovers in bench_failover). A follower now sleeps only until its own deadline."""
    from meshfed.server.raft.node import TICK_PERIOD, tick_wait

    assert tick_wait(now=10.0, deadline=10.2, waiting_for_election=True) == TICK_PERIOD
    assert 0.0 < tick_wait(now=10.0, deadline=10.013, waiting_for_election=True) <= 0.014
    # Overdue: this tick's check stands for election first; its poll must not spin.
    assert tick_wait(now=10.0, deadline=9.9, waiting_for_election=True) == TICK_PERIOD
    assert tick_wait(now=10.0, deadline=10.013, waiting_for_election=False) == TICK_PERIOD  # a leader

"""Leadership transfer under write load (server/raft/changes.py, server/raft/syncobj.py).

A CI run of tests/integration/test_membership.py failed on `meshfed leave` of the leader:
"leadership transfer did not complete" after ten seconds of elections in which the old leader kept
winning back. Two library behaviours fed each other:
- an entry appended after TimeoutNow left the target's log behind, so the voters refused it;
- the old leader, stepping down for the target's RequestVote, still had the election deadline from
  before it led, long past: it stood in the next term at its next tick and, holding the longest
  log, won. After two seconds of holding proposals, later attempts ran with writes flowing and
  lost the same way.

The first case runs the library's real handlers on a node that is not started; the second three
real RaftNodes on loopback, with proposals flowing all the time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pysyncobj import SyncObj
from pysyncobj.monotonic import monotonic as library_clock

from meshfed.fsm import Noop, StateMachine
from meshfed.server.raft import RaftNode, RaftTimings
from meshfed.server.raft.types import RaftError
from tests.ports import free_ports

KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU="


@pytest.fixture
def unstarted(tmp_path: Any) -> Iterator[SyncObj]:
    """The library's real handlers on a node that is not started, its sends dropped."""
    ports = free_ports(3)
    node = RaftNode(self_address=f"127.0.0.1:{ports[0]}", peers=[f"127.0.0.1:{p}" for p in ports[1:]],
                    machine=StateMachine(), cluster_key=KEY, data_dir=str(tmp_path))
    node._sync._SyncObj__transport.send = lambda peer, message: True
    try:
        yield node._sync
    finally:
        node._sync.destroy()


def test_a_leader_that_steps_down_for_a_candidate_waits_a_full_election_timeout(unstarted: SyncObj) -> None:
    """Raft resets the election timer on becoming a follower. Without that, a deposed leader whose
    vote the candidate could not get (its log is longer) stood at its very next tick, in the next
    term, and ended the candidate's election: the transfer's target could never win."""
    sync = unstarted
    sync._SyncObj__onBecomeLeader()
    sync._SyncObj__raftElectionDeadline = library_clock() - 5.0  # set before it led, long past
    candidate = next(iter(sync._SyncObj__otherNodes))
    sync._SyncObj__onMessageReceived(candidate, {
        "type": "request_vote", "term": sync.raftCurrentTerm + 1, "last_log_index": 0, "last_log_term": 0,
    })
    assert not sync._isLeader()
    conf = sync._SyncObj__conf
    remaining = sync._SyncObj__raftElectionDeadline - library_clock()
    assert conf.raftMinTimeout * 0.9 <= remaining <= conf.raftMaxTimeout


def test_the_transfer_s_target_says_it_stands_because_the_leader_asked(unstarted: SyncObj, caplog: Any) -> None:
    """TimeoutNow zeroes the target's deadline; the log line said "85004707 ms past the election
    timeout" (the host's uptime), which reads like a server frozen for a day."""
    sync = unstarted
    leader = next(iter(sync._SyncObj__otherNodes))
    sync._SyncObj__raftLeader = leader
    sync._SyncObj__onMessageReceived(leader, {"type": "timeout_now", "term": sync.raftCurrentTerm})
    sync.meshfed_deadline_at_tick = sync._SyncObj__raftElectionDeadline  # as each tick records it
    caplog.set_level(logging.INFO, logger="meshfed.server.raft.syncobj")
    sync._SyncObj__setCurrentTerm(sync.raftCurrentTerm + 1, sync._SyncObj__selfNode.id)  # the tick stands
    assert "standing for election in term 1 (the leader handed leadership over; 0 of 2 peers connected)" \
        in caplog.text, caplog.text
    assert "past the election timeout" not in caplog.text


def test_leadership_moves_to_the_target_while_proposals_keep_flowing(tmp_path: Any) -> None:
    ports = free_ports(3)
    addresses = [f"127.0.0.1:{p}" for p in ports]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        nodes = {
            address: RaftNode(self_address=address, peers=[a for a in addresses if a != address], machine=StateMachine(),
                              cluster_key=KEY, data_dir=str(tmp_path / address.replace(":", "_")),
                              timings=RaftTimings())
            for address in addresses
        }
        for node in nodes.values():
            node.start(loop)

        def leader() -> RaftNode | None:
            leaders = [n for n in nodes.values() if n.is_leader()]
            return leaders[0] if len(leaders) == 1 else None

        stop = asyncio.Event()
        acknowledged = 0

        async def writer() -> None:
            nonlocal acknowledged
            while not stop.is_set():
                current = leader()
                if current is None:
                    await asyncio.sleep(0.01)
                    continue
                try:
                    await current.apply([("", Noop())], timeout=2.0)
                    acknowledged += 1
                except RaftError:
                    await asyncio.sleep(0.01)

        try:
            deadline = time.monotonic() + 10
            while leader() is None:
                assert time.monotonic() < deadline, "no leader elected"
                await asyncio.sleep(0.05)
            writers = [asyncio.create_task(writer()) for _ in range(4)]
            outcomes = []
            for attempt in range(8):
                await asyncio.sleep(0.3)
                current = leader()
                while current is None:
                    await asyncio.sleep(0.05)
                    current = leader()
                target = [a for a in addresses if a != current.self_address][attempt % 2]
                started = time.monotonic()
                try:
                    moved_to = await current.transfer_leadership(target, timeout=10.0)
                    outcomes.append((moved_to == target, round(time.monotonic() - started, 2)))
                except RaftError as exc:
                    outcomes.append((False, str(exc)))
            stop.set()
            await asyncio.gather(*writers)
            assert all(ok for ok, _ in outcomes), outcomes
            assert acknowledged > 100, acknowledged
        finally:
            stop.set()
            for node in nodes.values():
                node.stop()

    asyncio.run(scenario())

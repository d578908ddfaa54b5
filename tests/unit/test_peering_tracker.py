"""The leader's in-memory stream status: FAILING past the timeout, ACTIVE again when heard."""

from __future__ import annotations

from meshfed.server.peering.tracker import StreamCounters, StreamTracker, read_state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_read_state_only_turns_active_into_failing_past_the_timeout():
    assert read_state("ACTIVE", 100.0, 0.0, 219.0, 120.0) == "ACTIVE"
    assert read_state("ACTIVE", 100.0, 0.0, 221.0, 120.0) == "FAILING"
    assert read_state("ACTIVE", None, 50.0, 171.0, 120.0) == "FAILING"  # never heard since the term began
    assert read_state("PENDING", None, 0.0, 10_000.0, 120.0) == "PENDING"
    assert read_state("TERMINATED", 0.0, 0.0, 10_000.0, 120.0) == "TERMINATED"


def test_tracker_fails_a_silent_peer_and_recovers_when_it_answers():
    clock = Clock()
    tracker = StreamTracker(timeout=5.0, clock=clock)
    clock.now += 60
    assert tracker.state("cluster-01", "ACTIVE") == "ACTIVE"  # not leading: judges nothing
    tracker.restart()
    assert tracker.state("cluster-01", "ACTIVE") == "ACTIVE"  # a new term gives the peer a full timeout
    clock.now += 6
    assert tracker.state("cluster-01", "ACTIVE") == "FAILING"
    tracker.sent("cluster-01")
    assert tracker.state("cluster-01", "ACTIVE") == "FAILING"  # sending proves nothing about the peer
    tracker.received("Cluster-01", size=10)
    assert tracker.status("cluster-01").last_heartbeat is None  # a data message is no heartbeat
    clock.now += 1
    tracker.received("Cluster-01", heartbeat=True, size=5)
    status = tracker.status("cluster-01")
    assert status.last_heartbeat == status.last_receive == clock.now and status.last_send == clock.now - 1
    assert tracker.state("cluster-01", "ACTIVE") == "ACTIVE"
    clock.now += 3
    assert tracker.heartbeat_age("cluster-01") == 3.0
    tracker.connected("cluster-01", True)
    tracker.sent("cluster-01", size=7)
    tracker.connected("cluster-01", False)
    assert tracker.counters("cluster-01") == StreamCounters(streams=0, bytes_sent=7, bytes_received=15,
                                                            reconnects=1)
    tracker.restart()
    assert tracker.status("cluster-01").last_receive is None and tracker.counters("cluster-01") == StreamCounters()
    assert tracker.state("cluster-01", "ACTIVE") == "ACTIVE"
    clock.now += 6
    tracker.stop()
    assert tracker.state("cluster-01", "ACTIVE") == "ACTIVE"

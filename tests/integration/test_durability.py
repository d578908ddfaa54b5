"""Durability and failover of a 3-server datacenter (issue #2 step 5).

The invariant checked everywhere: every write the API acknowledged is present on every server
after recovery, and the replicas are identical (same records, same index). Timings are checked
only where the issue states them (a new leader accepts writes within 2 s of a kill -9).
reference/pysyncobj.md §2.4 is what these tests guard against: PySyncObj as shipped lost
hundreds of acknowledged writes on a whole-cluster kill -9 during writes and snapshots.
"""

from __future__ import annotations

import re
import time

import requests

from .workload import Writers, assert_all_present_and_identical, node_names

SNAPSHOT_OFTEN = {"raft_snapshot_threshold": 40, "raft_snapshot_interval": "2s"}


def test_leader_kill_failover_loses_nothing_and_restarted_server_catches_up(make_dc) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", config=SNAPSHOT_OFTEN)
    dc.start()
    writers = Writers(dc).start()
    time.sleep(2.0)
    old_leader = dc.leader()
    old_leader.kill()
    killed_at = time.monotonic()

    survivor = next(s for s in dc.servers if s.alive())
    session = requests.Session()
    while True:  # the first write accepted after the kill
        try:
            r = session.put(survivor.http + "/v1/catalog/register", json={"Node": "after-kill", "Address": "127.0.99.2"},
                            timeout=10)
            if r.status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() - killed_at < 10, "no write accepted within 10 s of the leader's death"
    recovered = time.monotonic() - killed_at
    assert recovered < 2.0, f"writes resumed {recovered:.2f}s after kill -9 of the leader (want < 2 s)"
    assert dc.leader() is not old_leader
    # The survivor held those writes for a leader instead of failing them, and says so.
    metrics = session.get(survivor.http + "/v1/agent/metrics?format=prometheus", timeout=10).text
    held = re.findall(r'^meshfed_rpc_hold_retries\{reason="(\w+)"\} (\S+)$', metrics, re.MULTILINE)
    assert sum(float(count) for _, count in held) >= 1, held
    assert re.search(r"^meshfed_rpc_holds_exhausted 0\.0$", metrics, re.MULTILINE), metrics

    time.sleep(1.0)
    old_leader.start()
    time.sleep(1.5)
    acked = writers.stop() | {"after-kill"}
    assert len(acked) > 100, f"too few acknowledged writes ({len(acked)}) for a meaningful test"
    dc.wait_leader()
    assert_all_present_and_identical(dc, acked)


def test_graceful_stop_and_start_of_every_server_keeps_state(make_dc) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", config=SNAPSHOT_OFTEN)
    dc.start()
    acked = Writers(dc, threads=2)
    acked.start()
    time.sleep(1.5)
    written = acked.stop()
    _, before = node_names(dc, dc.leader())
    dc.stop()
    dc.start()
    assert_all_present_and_identical(dc, written)
    _, after = node_names(dc, dc.servers[0])
    assert before <= after


def test_whole_cluster_kill9_during_writes_and_snapshots_loses_no_acked_write(make_dc) -> None:  # type: ignore[no-untyped-def]
    """Three rounds of: write hard through every server while snapshots are taken, kill -9 all three
    servers at once, restart them, and check every acknowledged write on every replica."""
    dc = make_dc("dc1", config=SNAPSHOT_OFTEN)
    dc.start()
    all_acked: set[str] = set()
    for round_number in range(3):
        writers = Writers(dc, threads=4, prefix=f"r{round_number}w").start()
        time.sleep(2.5 + round_number * 0.37)  # vary where in the snapshot cycle the kill lands
        dc.kill_all()
        all_acked |= writers.stop()
        dc.start()
        assert_all_present_and_identical(dc, all_acked)
    assert len(all_acked) > 300, f"too few acknowledged writes ({len(all_acked)})"
    snapshots = sum(s.log_tail(100000).count("snapshot at index") for s in dc.servers)
    assert snapshots >= 3, f"only {snapshots} snapshots were written; the test must exercise compaction"


def test_restarting_a_follower_does_not_depose_the_leader(make_dc) -> None:  # type: ignore[no-untyped-def]
    """A restarted follower used to stand for election before the leader's first heartbeat reached
    it (its election timer starts at 0.2-0.5 s, the leader reconnects every 0.2 s), won with a log
    as long as anyone's, and deposed a healthy leader: CI saw the leader move under a test that
    restarted one follower. A server restarting with Raft state waits for the leader first."""
    dc = make_dc("dc1")
    dc.start()
    leader = dc.leader()
    for round_ in range(3):
        for follower in dc.followers():
            follower.stop()
            follower.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if dc.get(follower, "/v1/status/leader", timeout=2).json() == leader.rpc_address:
                        break
                except (requests.RequestException, ValueError):
                    pass
                time.sleep(0.05)
            assert dc.leader() is leader, f"round {round_}: restarting {follower.node} moved the leader"

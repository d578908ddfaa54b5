"""Durability and failover of a 3-server datacenter (issue #2 step 5).

The invariant checked everywhere: every write the API acknowledged is present on every server
after recovery, and the replicas are identical (same records, same index). Timings are checked
only where the issue states them (a new leader accepts writes within 2 s of a kill -9).
reference/pysyncobj.md §2.4 is what these tests guard against: PySyncObj as shipped lost
hundreds of acknowledged writes on a whole-cluster kill -9 during writes and snapshots.
"""

from __future__ import annotations

import itertools
import threading
import time

import requests

from .harness import Datacenter, wait_until

SNAPSHOT_OFTEN = {"raft_snapshot_threshold": 40, "raft_snapshot_interval": "2s"}


class Writers:
    """Threads writing distinct catalog nodes through every live server; records what was acked."""

    def __init__(self, dc: Datacenter, threads: int = 4, prefix: str = "w") -> None:
        self.dc = dc
        self.acked: set[str] = set()
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(f"{prefix}{n}",), daemon=True) for n in range(threads)]

    def _run(self, name: str) -> None:
        session = requests.Session()
        for i in itertools.count():
            if self._stop.is_set():
                return
            servers = [s for s in self.dc.servers if s.alive()]
            if not servers:
                time.sleep(0.01)
                continue
            server = servers[i % len(servers)]
            node = f"{name}-{i}"
            try:
                r = session.put(server.http + "/v1/catalog/register", json={"Node": node, "Address": "127.0.99.1"},
                                timeout=10)
                if r.status_code == 200 and r.json() is True:
                    with self._lock:
                        self.acked.add(node)
                else:
                    self.errors += 1
            except requests.RequestException:
                self.errors += 1

    def start(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> set[str]:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        with self._lock:
            return set(self.acked)


def node_names(dc: Datacenter, server) -> tuple[int, set[str]]:  # type: ignore[no-untyped-def]
    r = dc.get(server, "/v1/catalog/nodes?stale")
    r.raise_for_status()
    return int(r.headers["X-Consul-Index"]), {n["Node"] for n in r.json()}


def assert_all_present_and_identical(dc: Datacenter, acked: set[str], timeout: float = 20.0) -> None:
    def converged() -> bool:
        views = [node_names(dc, s) for s in dc.servers if s.alive()]
        return all(acked <= names for _, names in views) and len({(i, frozenset(n)) for i, n in views}) == 1

    try:
        wait_until(converged, timeout, interval=0.2, what="every acked write on every server, replicas identical")
    except AssertionError:
        for s in dc.servers:
            if s.alive():
                index, names = node_names(dc, s)
                print(f"{s.node}: index {index}, {len(names)} nodes, missing {len(acked - names)} acked: "
                      f"{sorted(acked - names)[:10]}")
        raise


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

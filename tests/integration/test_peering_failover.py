"""Peering across leader crashes on either side (issue #11: "leader kill on each side with the
stream re-established and imports intact").

One pair of 3-server clusters for the module (tests/integration/peered.py): cluster-01 accepts
and exports socat, cluster-02 dials and imports it. kill -9 of the acceptor's leader, then of the
dialer's: each time a socat instance registered in cluster-01 during the outage must show in
cluster-02 within a bound, cluster-02's imports must never be empty or shrink while the peers
reconnect, and both rows must read ACTIVE with something heard from the peer after the crash.
Only the HTTP API is read, so the test holds for a polling importer and for a stream alike.
Two cheaper checks share the clusters first: the `?peer=` reads block on `?index=` like local
reads, and never answer cluster-02's own instances.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from meshfed.server.cli.launcher import ServerProcess

from .conftest import next_block
from .harness import Datacenter, wait_until
from .peered import (
    ACCEPTOR_PEER,
    DIALER_PEER,
    IMPORTED_PATH,
    ImportWatch,
    PeeredClusters,
    heard_since,
    imported_nodes,
    new_leader,
    peering_row,
    register_instance,
    start_peered,
)

# From cluster-01's acknowledgement of a write to cluster-02 answering with it, across a leader
# change on either side (an election, then the peers finding each other's new leader).
VISIBLE_WITHIN = 15.0
# A peer silent for this long reads FAILING: short, so "ACTIVE again" at the end means the peers
# really talk again rather than the 2-minute default not having run out yet.
STREAM_TIMEOUT = "5s"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeeredClusters]:
    root = str(tmp_path_factory.mktemp("peering-failover"))
    clusters = start_peered(root, f"127.0.{next_block()}", f"127.0.{next_block()}",
                            config={"peering_stream_timeout": STREAM_TIMEOUT})
    yield clusters
    clusters.stop()


@pytest.fixture(autouse=True)
def logs_on_failure(pair: PeeredClusters, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(pair.logs(60))


def crash_leader_and_recover(pair: PeeredClusters, side: Datacenter) -> tuple[ServerProcess, dict[str, Any]]:
    """kill -9 `side`'s leader, register a new socat instance in cluster-01 meanwhile, and
    return once cluster-02 shows it; cluster-02's answers are watched the whole time."""
    before = imported_nodes(pair.dialer.servers[0], stale=True)
    assert before == set(pair.registered), before
    victim = side.leader()
    watched = [s for s in pair.dialer.servers if s is not victim and s.alive()]
    watch = ImportWatch(watched, before)
    watch.start()
    try:
        killed_at, killed_wall = time.monotonic(), time.time()
        victim.kill()
        leader = new_leader(side, victim)
        elected = time.monotonic() - killed_at
        node, acknowledged = register_instance(pair)
        wait_until(lambda: all(node in imported_nodes(s, stale=True) for s in watched), VISIBLE_WITHIN,
                   interval=0.05, what=f"{node} imported on every live cluster-02 server")
        visible = time.monotonic() - acknowledged
        # Both rows ACTIVE, each having heard its peer since the crash: the peers talk again,
        # through the new leader on the side that lost its own.
        wait_until(lambda: heard_since(peering_row(pair.dialer, ACCEPTOR_PEER), killed_wall)
                   and heard_since(peering_row(pair.acceptor, DIALER_PEER), killed_wall),
                   VISIBLE_WITHIN, interval=0.2, what="both peering rows ACTIVE and heard from since the crash")
    finally:
        watch.finish()
    timings = {"elected_s": round(elected, 2), "visible_after_ack_s": round(visible, 2), "reads": watch.reads,
               "default_read_failures": watch.default_failures}
    print(f"{side.name} leader {victim.node} killed -> {leader.node}: {timings}")
    assert watch.reads > 10, timings  # the watch really ran through the outage
    assert watch.incomplete == [], f"imports emptied or shrank during the outage: {watch.incomplete[:5]}"
    assert watch.stale_failures == [], f"cluster-02 did not answer ?stale: {watch.stale_failures[:5]}"
    return victim, timings


def test_blocking_read_of_imports_waits_for_the_next_import(pair: PeeredClusters) -> None:
    """A `?peer=` read is a blocking query like any health read: with the index of the current
    answer it waits for a change (a client watching imports would otherwise spin), and the next
    imported instance ends the wait early."""
    server = pair.dialer.followers()[0]
    current = requests.get(server.http + IMPORTED_PATH, timeout=10)
    index = int(current.headers["X-Consul-Index"])
    started = time.monotonic()
    unchanged = requests.get(server.http + IMPORTED_PATH + f"&index={index}&wait=2s", timeout=10)
    assert time.monotonic() - started >= 1.9, "a blocking read of imports returned before anything changed"
    assert unchanged.json() == current.json()

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(requests.get, server.http + IMPORTED_PATH + f"&index={index}&wait=30s", timeout=40)
        time.sleep(0.3)  # parked before the write
        node, acknowledged = register_instance(pair)
        answer = waiting.result()
    assert time.monotonic() - acknowledged < VISIBLE_WITHIN
    assert int(answer.headers["X-Consul-Index"]) > index
    assert node in {row["Node"]["Node"] for row in answer.json()}


def test_peer_reads_never_answer_local_instances(pair: PeeredClusters) -> None:
    """cluster-02 has a socat of its own (with a sidecar): every `?peer=cluster-01` read answers
    imported instances only, marked with the peer, never the local ones (issue #11 item 3)."""
    server = pair.dialer.servers[0]
    local = {"Name": "socat", "Port": 7000, "Connect": {"SidecarService": {}}}
    assert requests.put(server.http + "/v1/agent/service/register", json=local, timeout=10).status_code == 200
    wait_until(lambda: requests.get(server.http + "/v1/health/connect/socat", timeout=10).json(), 10,
               what="cluster-02's own socat sidecar")
    imported = imported_nodes(server)
    catalog = requests.get(server.http + "/v1/catalog/service/socat?peer=" + ACCEPTOR_PEER, timeout=10).json()
    assert {(row["Node"], row["PeerName"]) for row in catalog} == {(node, ACCEPTOR_PEER) for node in imported}
    for path in ("/v1/health/connect/socat", "/v1/catalog/connect/socat"):
        rows = requests.get(server.http + path + "?peer=" + ACCEPTOR_PEER, timeout=10).json()
        # cluster-01 exports socat without a sidecar: nothing serves Connect for it there.
        assert rows == [], f"{path}?peer= answered instances of cluster-02: {rows}"


def test_acceptor_leader_killed(pair: PeeredClusters) -> None:
    _, timings = crash_leader_and_recover(pair, pair.acceptor)
    # cluster-02 kept its leader, so its default (consistent) reads never failed either.
    assert timings["default_read_failures"] == 0, timings


def test_dialer_leader_killed_then_both_restarted(pair: PeeredClusters) -> None:
    victim, _ = crash_leader_and_recover(pair, pair.dialer)

    # The crashed servers come back: the dialer's catches up on every imported instance from its
    # Raft log, and the peering stays ACTIVE on both sides.
    restarted_at = time.time()
    for server in [*pair.acceptor.servers, *pair.dialer.servers]:
        if not server.alive():
            server.start()
    wait_until(lambda: imported_nodes(victim, stale=True) == set(pair.registered), 20, interval=0.1,
               what=f"the restarted {victim.node} answering every imported instance")
    wait_until(lambda: heard_since(peering_row(pair.dialer, ACCEPTOR_PEER), restarted_at)
               and heard_since(peering_row(pair.acceptor, DIALER_PEER), restarted_at),
               VISIBLE_WITHIN, interval=0.2, what="both peering rows ACTIVE after the restarts")
    node, _ = register_instance(pair)
    wait_until(lambda: node in imported_nodes(victim, stale=True), VISIBLE_WITHIN, interval=0.1,
               what=f"{node} imported after the restarts")

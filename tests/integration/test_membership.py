"""Live Raft membership with real server processes, under a writer (issue #12 item 1).

One datacenter walks through: grow 3 -> 4 (a server started with -retry-join and no
-bootstrap-expect joins), transfer-leader to the new server, kill -9 a server and remove it,
a removal refused because it would leave no live majority, a restart after the change (the
restarted server uses the membership it applied, not its flags), and a graceful `meshfed leave`.
The restart of every server after changes is in the long run, tests/faults/membership.py. Throughout, a writer thread registers nodes; at
the end every acknowledged write is on every member and the replicas are identical.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from meshfed.server.cli.launcher import ServerProcess

from .harness import Datacenter, wait_until
from .workload import Writers, assert_all_present_and_identical


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshfed.server.cli", *args, "-http-addr", server.http],
                          capture_output=True, text=True, timeout=60)


def raft_members(dc: Datacenter, server: ServerProcess) -> dict[str, bool]:
    """Node -> Healthy, as /v1/operator/raft/configuration (the leader's view) lists them."""
    r = dc.get(server, "/v1/operator/raft/configuration")
    r.raise_for_status()
    return {s["Node"]: s["Healthy"] for s in r.json()["Servers"]}


def test_grow_transfer_remove_leave_and_restart_without_losing_an_acknowledged_write(make_dc: Any) -> None:
    dc: Datacenter = make_dc(count=3)
    dc.start()
    s1, s2, s3 = dc.servers
    writers = Writers(dc, threads=2).start()

    # Grow 3 -> 4: no -bootstrap-expect, one running server to join through.
    base = s1.address.rsplit(".", 1)[0]
    s4 = ServerProcess(node="dc1-s4", datacenter="dc1", address=f"{base}.4", data_dir=s1.data_dir[:-2] + "s4",
                       peers=[], key=dc.key, extra_args=["-retry-join", s1.raft_address])
    dc.servers.append(s4)
    s4.start()
    wait_until(lambda: raft_members(dc, s1) == dict.fromkeys(["dc1-s1", "dc1-s2", "dc1-s3", "dc1-s4"], True),
               30, interval=0.2, what="dc1-s4 listed and healthy")

    # Leadership to the new member: it caught up, and it can lead.
    moved = cli(s2, "operator", "raft", "transfer-leader", "-id", "dc1-s4")
    assert moved.returncode == 0, moved.stderr
    assert dc.leader() is s4

    # Client mistakes are 400s that say what is wrong, never a 500.
    missing = dc.session.delete(s1.http + "/v1/operator/raft/peer", timeout=10)
    assert missing.status_code == 400 and "Must specify either ?id" in missing.text
    unknown = dc.session.delete(s1.http + "/v1/operator/raft/peer", params={"id": "nope"}, timeout=10)
    assert unknown.status_code == 400 and "'nope' was not found in the Raft configuration" in unknown.text
    bad = dc.put(s1, "/v1/operator/autopilot/configuration", {"MinQuorum": -1})
    assert bad.status_code == 400 and "MinQuorum" in bad.text

    # kill -9 a server, then remove it (asked of a follower: forwarded to the leader).
    s2.kill()
    wait_until(lambda: not raft_members(dc, s4)["dc1-s2"], 10, what="dc1-s2 reported failed")
    hurt = dc.get(s1, "/v1/operator/autopilot/health")
    assert hurt.status_code == 429 and hurt.json()["FailureTolerance"] == 0
    r = dc.session.delete(s1.http + "/v1/operator/raft/peer", params={"id": "dc1-s2"}, timeout=30)
    assert r.status_code == 200, r.text
    assert set(raft_members(dc, s4)) == {"dc1-s1", "dc1-s3", "dc1-s4"}
    # Removing the dead server restored the fault tolerance: 3 healthy voters tolerate 1 failure.
    def tolerates_one() -> bool:
        health = dc.get(s3, "/v1/operator/autopilot/health").json()
        return bool(health["Healthy"]) and health["FailureTolerance"] == 1

    wait_until(tolerates_one, 10, interval=0.2, what="autopilot: healthy, failure tolerance 1")
    # Autopilot's configuration goes through the log: set on one server, read on another.
    updated = cli(s3, "operator", "autopilot", "set-config", "-cleanup-dead-servers", "true", "-min-quorum", "3")
    assert updated.returncode == 0 and "Configuration updated!" in updated.stdout, updated.stderr
    shown = dc.get(s4, "/v1/operator/autopilot/configuration").json()
    assert shown["CleanupDeadServers"] is True and shown["MinQuorum"] == 3, shown
    peers = cli(s3, "operator", "raft", "list-peers")
    assert peers.returncode == 0 and "dc1-s2" not in peers.stdout and "dc1-s4" in peers.stdout
    acked_after_removal = len(writers.acked)

    # With dc1-s3 down, removing dc1-s1 would leave one live voter of two: refused, with why.
    s3.stop()
    refused = cli(s4, "operator", "raft", "remove-peer", "-id", "dc1-s1")
    assert refused.returncode != 0 and "a majority needs 2" in refused.stderr, refused.stderr
    # dc1-s3 restarts with the membership it applied (its flags still name dc1-s2), and catches up.
    s3.start()
    wait_until(lambda: all(raft_members(dc, s4).values()), 20, interval=0.2, what="dc1-s3 back")
    wait_until(lambda: len(writers.acked) > acked_after_removal + 10, 20, what="writes acknowledged after removal")

    # Graceful leave of the leader: it hands leadership over, is removed, and stops.
    left = cli(s4, "leave")
    assert left.returncode == 0, left.stderr
    wait_until(lambda: not s4.alive(), 15, what="dc1-s4 stopped after leaving")
    assert set(raft_members(dc, s1)) == {"dc1-s1", "dc1-s3"}

    acked = writers.stop()
    assert len(acked) > 50
    assert_all_present_and_identical(dc, acked)

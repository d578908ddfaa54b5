"""Long membership run, outside the test suite: `python -m tests.faults.membership [--rounds N]`.

A 5-server datacenter (3 bootstrapped, 2 joined live; snapshots every 40 entries, so joiners
install the leader's snapshot) under four writer threads. Each round:
kill -9 a random follower, remove it with `remove-peer`, start a brand-new server at a new address
that joins, move leadership to a random member, and every third round retire one member with
SIGTERM and `leave_on_terminate` and add another. At the end every server restarts, and the
acknowledged writes are checked on every member (tests/integration/workload.py). Prints one JSON
line; exit status 1 when a write was lost or replicas diverged. The suite's short version is
tests/integration/test_membership.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time

import requests

from meshfed.server.cli.launcher import ServerProcess
from tests.faults.scenarios import SNAPSHOT_OFTEN
from tests.integration.harness import Datacenter, wait_until
from tests.integration.workload import Writers, durability_verdict

BASE = "127.0.215"


def members(dc: Datacenter) -> dict[str, bool]:
    live = next(s for s in dc.servers if s.alive())
    r = dc.get(live, "/v1/operator/raft/configuration", timeout=10)
    r.raise_for_status()
    return {s["Node"]: s["Healthy"] for s in r.json()["Servers"]}


def add_server(dc: Datacenter, root: str, number: int, leave_config: str) -> ServerProcess:
    seed = next(s for s in dc.servers if s.alive())
    server = ServerProcess(node=f"dc1-s{number}", datacenter="dc1", address=f"{BASE}.{number}",
                           data_dir=os.path.join(root, "dc1", f"s{number}"), peers=[], key=dc.key,
                           extra_args=["-retry-join", seed.raft_address], config_files=[leave_config])
    dc.servers.append(server)
    server.start()
    wait_until(lambda: members(dc).get(server.node) is True, 60, interval=0.2, what=f"{server.node} joined")
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="meshfed-fault-membership-")
    leave_config = os.path.join(root, "leave.json")
    with open(leave_config, "w") as handle:
        # Snapshots every 40 entries: joiners and restarted servers install the leader's snapshot,
        # which carries the member list (server/raft/syncobj.py _meshfed_install_cluster).
        json.dump({"leave_on_terminate": True, **SNAPSHOT_OFTEN}, handle)
    dc = Datacenter("dc1", BASE, root, count=3, config=SNAPSHOT_OFTEN)
    started = time.monotonic()
    timings: dict[str, list[float]] = {"join": [], "remove": [], "transfer": [], "leave": []}
    try:
        dc.start()
        writers = Writers(dc, threads=4).start()
        number = 4
        for _ in range(2):
            add_server(dc, root, number, leave_config)
            number += 1
        for round_number in range(args.rounds):
            victim = rng.choice(dc.followers())
            victim.kill()
            wait_until(lambda v=victim: members(dc).get(v.node) is False, 15, what=f"{victim.node} failed")
            t0 = time.monotonic()
            live = next(s for s in dc.servers if s.alive())
            r = requests.delete(live.http + "/v1/operator/raft/peer", params={"id": victim.node}, timeout=30)
            assert r.status_code == 200, r.text
            timings["remove"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            add_server(dc, root, number, leave_config)
            number += 1
            timings["join"].append(time.monotonic() - t0)
            target = rng.choice(dc.followers())
            t0 = time.monotonic()
            r = requests.post(live.http + "/v1/operator/raft/transfer-leader", params={"id": target.node}, timeout=30)
            assert r.status_code == 200, r.text
            timings["transfer"].append(time.monotonic() - t0)
            if round_number % 3 == 2:
                leaving = rng.choice([s for s in dc.servers if s.alive() and "-s" in s.node and s.config_files])
                t0 = time.monotonic()
                leaving.stop(timeout=30)  # SIGTERM: leave_on_terminate
                wait_until(lambda v=leaving: v.node not in members(dc), 30, what=f"{leaving.node} left")
                timings["leave"].append(time.monotonic() - t0)
                add_server(dc, root, number, leave_config)
                number += 1
        acked = writers.stop()
        current = set(members(dc))
        restart = [s for s in dc.servers if s.node in current]
        for server in restart:  # SIGINT: a plain stop, never a leave (leave_on_terminate is SIGTERM only)
            assert server.process is not None
            server.process.send_signal(signal.SIGINT)
            server.process.wait(30)
        for server in restart:
            server.start()
        dc.wait_leader(30)
        verdict = durability_verdict(dc, acked)
        result = {"scenario": "membership", "rounds": args.rounds, "acked": len(acked), "errors": writers.errors,
                  "members": sorted(members(dc)), "seconds": round(time.monotonic() - started, 1),
                  **{f"{k}_max_s": round(max(v), 2) for k, v in timings.items() if v}, **verdict}
    finally:
        dc.stop()
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 1 if result["lost"] or result["diverged"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""One raw PySyncObj node for the write baseline: a replicated dict, nothing of meshfed's stack.

Why it exists: meshfed's write path adds HTTP, msgpack, the state machine, forwarding and group
commit on top of PySyncObj. To say what those layers cost on *this* machine *today*, the same run
measures PySyncObj alone, configured as reference/pysyncobj.md §6 says and as server/raft/node.py
does (appendEntriesUseBatch=False, journal and dump on disk, a password, meshfed's RaftTimings).

The client runs inside the node process, as the reference measured it: the driver
(bench_writes.py) talks to each node over a tiny control channel (one JSON object per line over
TCP on loopback) to find the leader and to ask it to run a workload in one of its own threads and
report the raw latencies. States: started -> (tick thread elects a leader) -> serving control
requests -> `stop` (or the driver closing the channel, e.g. because it crashed) destroys the SyncObj and exits.

Run: python -m tests.bench.raw_pysyncobj_node -self A:P -peer B:P -peer C:P -data-dir D
     -password K -control HOST:PORT
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.config import FAIL_REASON

from meshfed.server.raft import RaftTimings

# meshfed's default raft_snapshot_threshold (server/config/loader.py), so both compact equally often.
SNAPSHOT_THRESHOLD = 8192
SYNC_TIMEOUT = 5.0
KEY_SPACE = 256  # distinct keys, so the state stays small, as in the reference's runs
VALUE = "x" * 10  # 10-byte str payload, the reference's §4 workload


class ReplicatedDict(SyncObjConsumer):
    """Built before the SyncObj so its attributes are part of snapshots (reference §1.1)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}

    @replicated
    def set(self, key: str, value: str) -> int:
        self.data[key] = value
        return len(self.data)


def build(args: argparse.Namespace) -> tuple[SyncObj, ReplicatedDict]:
    timings = RaftTimings()
    os.makedirs(args.data_dir, exist_ok=True)
    conf = SyncObjConf(
        password=args.password,
        bindAddress=args.self_address,  # without it PySyncObj listens on 0.0.0.0:<port>
        appendEntriesUseBatch=False,
        appendEntriesPeriod=timings.heartbeat,
        raftMinTimeout=timings.election_min,
        raftMaxTimeout=timings.election_max,
        leaderFallbackTimeout=timings.leader_fallback,
        connectionTimeout=timings.connection_timeout,
        connectionRetryTime=timings.connection_retry,
        journalFile=os.path.join(args.data_dir, "journal"),
        fullDumpFile=os.path.join(args.data_dir, "dump"),
        logCompactionMinEntries=SNAPSHOT_THRESHOLD,
        dynamicMembershipChange=False,
    )
    store = ReplicatedDict()
    return SyncObj(args.self_address, args.peers, conf, consumers=[store]), store


def status(sync: SyncObj) -> dict[str, Any]:
    raw = sync.getStatus()
    return {
        "leader": raw.get("state") == 2,
        "has_quorum": bool(raw.get("has_quorum")),
        "ready": bool(sync.isReady()),
        "commit_idx": raw.get("commit_idx"),
        "last_applied": raw.get("last_applied"),
    }


def run_sequential(store: ReplicatedDict, seconds: float) -> dict[str, Any]:
    """Blocking writes from one thread, one after the other: the latency of a single commit."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    deadline = started + seconds
    i = 0
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        try:
            store.set(f"k{i % KEY_SPACE}", VALUE, sync=True, timeout=SYNC_TIMEOUT)
            latencies.append(time.perf_counter() - t0)
        except Exception as exc:  # the library raises SyncObjException with an error code
            reason = str(getattr(exc, "errorCode", exc))
            errors[reason] = errors.get(reason, 0) + 1
        i += 1
    return {"elapsed": time.perf_counter() - started, "latencies": latencies, "errors": errors}


def run_pipelined(store: ReplicatedDict, seconds: float, window: int) -> dict[str, Any]:
    """Async writes with `window` in flight: the library's throughput ceiling for one entry per op."""
    slots = threading.Semaphore(window)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    last_done = [0.0]

    def done(result: Any, error: int, submitted: float) -> None:  # runs on the tick thread
        now = time.perf_counter()
        with lock:
            if error == FAIL_REASON.SUCCESS:
                latencies.append(now - submitted)
            else:
                errors[str(error)] = errors.get(str(error), 0) + 1
            last_done[0] = now
        slots.release()

    started = time.perf_counter()
    deadline = started + seconds
    i = 0
    while time.perf_counter() < deadline:
        if not slots.acquire(timeout=SYNC_TIMEOUT):
            break
        submitted = time.perf_counter()
        store.set(f"k{i % KEY_SPACE}", VALUE, callback=lambda r, e, s=submitted: done(r, e, s))
        i += 1
    drained = all(slots.acquire(timeout=SYNC_TIMEOUT) for _ in range(window))
    with lock:
        return {
            "elapsed": (last_done[0] or time.perf_counter()) - started,
            "latencies": list(latencies),
            "errors": errors,
            "submitted": i,
            "drained": drained,
        }


def serve(control: str, sync: SyncObj, store: ReplicatedDict) -> None:
    """Answer the driver's requests on its one connection; when it goes away (done or crashed), exit."""
    host, _, port = control.rpartition(":")
    with socket.create_server((host, int(port))) as listener:
        connection, _ = listener.accept()
    with connection, connection.makefile("rw") as stream:
        for line in stream:
            request = json.loads(line)
            op = request.get("op")
            if op == "status":
                reply: dict[str, Any] = status(sync)
            elif op == "sequential":
                reply = run_sequential(store, float(request["seconds"]))
            elif op == "pipelined":
                reply = run_pipelined(store, float(request["seconds"]), int(request["window"]))
            elif op == "stop":
                stream.write(json.dumps({"stopping": True}) + "\n")
                stream.flush()
                break
            else:
                reply = {"error": f"unknown op {op!r}; expected status, sequential, pipelined or stop"}
            stream.write(json.dumps(reply) + "\n")
            stream.flush()
    sync.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-self", dest="self_address", required=True)
    parser.add_argument("-peer", dest="peers", action="append", default=[])
    parser.add_argument("-data-dir", required=True)
    parser.add_argument("-password", required=True)
    parser.add_argument("-control", required=True)
    args = parser.parse_args()
    sync, store = build(args)
    serve(args.control, sync, store)


if __name__ == "__main__":
    main()

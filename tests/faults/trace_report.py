"""Follow lost writes through the servers' write traces (MESHFED_TRACE_WRITES, server/raft/trace.py).

`python -m tests.faults.trace_report DATA_DIR NODE_NAME ...` (DATA_DIR is what
`python -m tests.faults.run --trace` prints as `data`). For each node name: which server answered
the client and how, the request id, which server proposed it, where its commit callback fired
(index, term, outcome), which servers applied that request id, and what each server applied at
the acknowledged index instead, plus the snapshot installs and snapshot-chunk commits around it.
With no names, and after them, it lists every index two servers applied differently.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any


def load(data_dir: str) -> dict[str, list[dict[str, Any]]]:
    """Events per server process, named `raft address (pid)`."""
    traces = {}
    for path in sorted(glob.glob(os.path.join(data_dir, "trace-*.jsonl"))):
        with open(path) as f:
            events = [json.loads(line) for line in f if line.strip()]
        start = next((e for e in events if e["ev"] == "start"), {})
        traces[f"{start.get('raft', '?')} ({start.get('pid', '?')})"] = events
    return traces


def follow(traces: dict[str, list[dict[str, Any]]], name: str, window: float = 8.0) -> list[str]:
    out = [f"== {name}"]
    rids = set()
    for server, events in traces.items():
        for e in events:
            if e["ev"] == "http_register" and e["node"] == name:
                rids.add(e["rid"])
                out.append(f"  http   {server} t={e['t']:.3f} rid={e['rid']} answer={e.get('answer', e.get('error'))}")
    acked_at: list[tuple[str, int, Any, float]] = []
    for server, events in traces.items():
        batches = {e["batch"]: e for e in events if e["ev"] == "propose" and rids & set(e["rids"])}
        for e in events:
            if e["ev"] == "propose" and e["batch"] in batches:
                out.append(f"  propose {server} t={e['t']:.3f} batch={e['batch']} size={len(e['rids'])}")
            if e["ev"] == "commit" and e["batch"] in batches:
                out.append(f"  commit {server} t={e['t']:.3f} batch={e['batch']} error={e['error']} index={e['index']} "
                           f"term={e['term']} current_term={e['current_term']} commit={e['commit']} leader={e['leader']}")
                if e["error"] == 0:
                    acked_at.append((server, e["index"], e["term"], e["t"]))
            if e["ev"] == "apply" and rids & set(e["rids"]):
                out.append(f"  apply  {server} t={e['t']:.3f} index={e['index']} term={e['term']} leader={e['leader']}")
    for _acker, index, _term, when in acked_at:
        for server, events in traces.items():
            at_index = [e for e in events if e["ev"] == "apply" and e["index"] == index]
            for e in at_index:
                mine = bool(rids & set(e["rids"]))
                out.append(f"  at {index}: {server} applied term={e['term']} t={e['t']:.3f} has_it={mine}")
            for e in events:
                if e["ev"] in ("load_snapshot", "follower_commit") and abs(e["t"] - when) < window:
                    crossed = e["ev"] == "follower_commit" and e["before"] < index <= e["after"]
                    if e["ev"] == "follower_commit" and not (crossed or e.get("snapshot_chunk")):
                        continue
                    detail = {k: v for k, v in e.items() if k not in ("ev", "t")}
                    out.append(f"  {e['ev']} {server} t={e['t']:.3f} {detail}")
    return out


def divergent_applies(traces: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Indexes that servers applied with different entries (a replica that later replaced its
    state by a snapshot can hide this from the final check), and the commit callbacks that
    answered success on the minority version."""
    variants: dict[int, dict[tuple[Any, tuple[str, ...]], list[str]]] = {}
    for server, events in traces.items():
        for e in events:
            if e["ev"] == "apply":
                variants.setdefault(e["index"], {}).setdefault((e["term"], tuple(e["rids"])), []).append(server)
    out = []
    for index in sorted(i for i, v in variants.items() if len(v) > 1):
        for (term, rids), servers in variants[index].items():
            out.append(f"index {index}: term {term}, {len(rids)} request ids, applied by {', '.join(servers)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    traces = load(args.data_dir)
    if not traces:
        print(f"no trace-*.jsonl in {args.data_dir}", file=sys.stderr)
        return 1
    for name in args.names:
        print("\n".join(follow(traces, name)))
    print("\n".join(divergent_applies(traces)) or "no index was applied differently by two servers")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Long fault runs, outside the test suite: `python -m tests.faults.run [--rounds N] [SCENARIO ...]`.

Each scenario starts its own 3-server datacenter on 127.0.210.x-127.0.213.x (blocks no test or benchmark uses), runs its
rounds, prints one JSON line, and stops its servers. The figures in docs/reliability.md come from
this script; the suite runs two rounds of each (tests/integration/test_faults_short.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

from tests.faults.scenarios import SCENARIOS, SNAPSHOT_OFTEN
from tests.integration.harness import Datacenter

DEFAULT_ROUNDS = {"leader-kill": 20, "follower-kill": 20, "whole-cluster-kill": 5, "leader-pause": 10}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per scenario (default: per scenario)")
    parser.add_argument("--keep-data", action="store_true", help="keep data and logs for inspection")
    parser.add_argument("--trace", action="store_true",
                        help="servers write a per-process write trace into the data folder (implies --keep-data)")
    args = parser.parse_args(argv)
    args.keep_data |= args.trace
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = args.scenarios or list(SCENARIOS)
    failed = False
    for number, name in enumerate(args.scenarios):
        root = tempfile.mkdtemp(prefix=f"meshfed-fault-{name}-")
        if args.trace:  # inherited by the server processes (server/raft/trace.py)
            os.environ["MESHFED_TRACE_WRITES"] = os.path.join(root, "trace-")
        dc = Datacenter("dc1", f"127.0.{210 + number}", root, config=SNAPSHOT_OFTEN)
        try:
            result = SCENARIOS[name](dc, args.rounds or DEFAULT_ROUNDS[name])
        finally:
            dc.stop()
            if not args.keep_data:
                shutil.rmtree(root, ignore_errors=True)
        failed |= bool(result["lost"] or result["diverged"])
        print(json.dumps({"scenario": name, **result, **({"data": root} if args.keep_data else {})}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

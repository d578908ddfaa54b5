"""`meshfed federation check`: print the hop-by-hop verdict a server computes for the WAN path.

The server does the probing (server/wan/self_check.py): what matters is what *it* can reach, not
the operator's laptop. Exit status: 0 when no hop failed, 2 when one did (so scripts and
readiness checks can act on it), 1 when the server itself could not be asked.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

Request = Callable[[argparse.Namespace, str, str], Any]
MARK = {"ok": " OK ", "warn": "WARN", "fail": "FAIL"}
EXIT_BROKEN = 2


def render(report: dict[str, Any]) -> str:
    lines = [f"federation check from {report.get('Datacenter', '?')}:"]
    for hop in report.get("Hops", []):
        lines.append(f"[{MARK.get(hop.get('Status', ''), '????')}] {hop.get('Name', '')}: {hop.get('Detail', '')}")
        if hop.get("Status") != "ok" and hop.get("Fix"):
            lines.append(f"       fix: {hop['Fix']}")
    lines.append("healthy" if report.get("Healthy") else "BROKEN: see the FAIL lines above")
    return "\n".join(lines)


def add_commands(sub: Any, add_http_flags: Callable[[argparse.ArgumentParser], None], request: Request) -> None:
    areas = sub.add_parser("federation", help="WAN federation diagnostics").add_subparsers(dest="area", metavar="ACTION")
    areas.required = True
    check = areas.add_parser("check", help="walk the WAN path hop by hop: verdict and fix for each (exit 2 if broken)")
    add_http_flags(check)
    check.add_argument("-json", "--json", dest="json", action="store_true", help="print the report as JSON")
    check.add_argument("-stale", "--stale", dest="stale", action="store_true",
                       help="run on the server asked instead of the leader (replication is then not judged)")
    check.add_argument("-datacenter", "--datacenter", dest="datacenter", default="",
                       help="run the check in another datacenter (its leader walks its own path)")

    def run(ns: argparse.Namespace) -> int:
        query = {"dc": ns.datacenter} if ns.datacenter else {}
        if ns.stale:
            query["stale"] = ""
        path = "/v1/internal/federation/check" + (f"?{urlencode(query)}" if query else "")
        report = request(ns, "GET", path)
        print(json.dumps(report, indent=2) if ns.json else render(report))
        return 0 if report.get("Healthy") else EXIT_BROKEN

    check.set_defaults(func=run)

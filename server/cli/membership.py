"""CLI for live Raft membership, as Consul's: `operator raft transfer-leader [-id]`,
`operator raft remove-peer -address|-id` and `leave` (server/http/routes_operator.py)."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from meshfed.server.cli.http import CLIError, http_addr, http_request, table, token_of


def _get_any_status(ns: argparse.Namespace, path: str, ok: tuple[int, ...]) -> tuple[int, Any]:
    """(status, JSON body) of a GET whose non-200 answers in `ok` still carry the reply."""
    request = urllib.request.Request(http_addr(ns).rstrip("/") + path)
    if token_of(ns):
        request.add_header("X-Consul-Token", token_of(ns))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        if exc.code in ok:
            return exc.code, json.loads(raw)
        raise CLIError(f"GET {path}: HTTP {exc.code}: {raw.decode(errors='replace').strip()}") from None
    except urllib.error.URLError as exc:
        raise CLIError(f"cannot reach {http_addr(ns)}: {exc.reason}") from None


def cmd_transfer_leader(ns: argparse.Namespace) -> int:
    query = f"?{urlencode({'id': ns.id})}" if ns.id else ""
    answer = http_request(ns, "POST", "/v1/operator/raft/transfer-leader" + query) or {}
    leader = answer.get("Leader") or ""
    print(f"Success! Leadership transferred{' to ' + leader if leader else ''}.")
    return 0


def cmd_remove_peer(ns: argparse.Namespace) -> int:
    if bool(ns.id) == bool(ns.address):
        raise CLIError("give exactly one of -id and -address")
    kind, value = ("id", ns.id) if ns.id else ("address", ns.address)
    http_request(ns, "DELETE", "/v1/operator/raft/peer?" + urlencode({kind: value}))
    print(f'Removed peer with {kind} "{value}"')
    return 0


def cmd_autopilot_state(ns: argparse.Namespace) -> int:
    """Consul's `operator autopilot state`, from GET /v1/operator/autopilot/health (a 429 there
    only means unhealthy: the body is printed all the same)."""
    status, health = _get_any_status(ns, "/v1/operator/autopilot/health", ok=(200, 429))
    print(f"Healthy: {str(health['Healthy']).lower()}")
    print(f"Failure Tolerance: {health['FailureTolerance']}")
    rows = [("Name", "Address", "Leader", "Voter", "Healthy", "LastContact", "LastIndex")]
    for s in health["Servers"]:
        rows.append((s["Name"], s["Address"], str(s["Leader"]).lower(), str(s["Voter"]).lower(),
                     str(s["Healthy"]).lower(), s["LastContact"] or "never", str(s["LastIndex"])))
    print(table(rows))
    return 0 if status == 200 else 2


def cmd_autopilot_get(ns: argparse.Namespace) -> int:
    config = http_request(ns, "GET", "/v1/operator/autopilot/configuration")
    for key in ("CleanupDeadServers", "LastContactThreshold", "MaxTrailingLogs", "MinQuorum",
                "ServerStabilizationTime", "RedundancyZoneTag", "DisableUpgradeMigration", "UpgradeVersionTag"):
        value = config.get(key)
        shown = str(value).lower() if isinstance(value, bool) else f'"{value}"' if value == "" else value
        print(f"{key} = {shown}")
    return 0


def _flag_bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise CLIError(f"-cleanup-dead-servers: {text!r}; accepted: true or false")
    return text.lower() == "true"


def cmd_autopilot_set(ns: argparse.Namespace) -> int:
    """Consul's set-config: read, change the flags given, write back with cas."""
    config = http_request(ns, "GET", "/v1/operator/autopilot/configuration")
    changes = {"CleanupDeadServers": None if ns.cleanup_dead_servers is None else _flag_bool(ns.cleanup_dead_servers),
               "LastContactThreshold": ns.last_contact_threshold, "MaxTrailingLogs": ns.max_trailing_logs,
               "MinQuorum": ns.min_quorum, "ServerStabilizationTime": ns.server_stabilization_time}
    config.update({key: value for key, value in changes.items() if value is not None})
    cas = config.get("ModifyIndex", 0)
    applied = http_request(ns, "PUT", f"/v1/operator/autopilot/configuration?cas={cas}", config)
    if not applied:
        raise CLIError("Configuration could not be atomically updated, please try again")
    print("Configuration updated!")
    return 0


def cmd_leave(ns: argparse.Namespace) -> int:
    http_request(ns, "PUT", "/v1/agent/leave")
    print("Graceful leave complete")
    return 0


def add_membership_commands(sub: Any, operator: Any, raft: Any,
                            add_http_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """`sub`: the top-level subcommands; `operator`: the `operator` areas; `raft`: `operator raft`'s."""
    transfer = raft.add_parser("transfer-leader", help="move Raft leadership to another server")
    transfer.add_argument("-id", "--id", default="", help="the server to lead (default: the most caught-up)")
    add_http_flags(transfer)
    transfer.set_defaults(func=cmd_transfer_leader)

    remove = raft.add_parser("remove-peer", help="remove a server from the Raft configuration")
    remove.add_argument("-id", "--id", default="", help="the server's ID (its node name)")
    remove.add_argument("-address", "--address", default="", help="the server's address (ip:port)")
    add_http_flags(remove)
    remove.set_defaults(func=cmd_remove_peer)

    autopilot = operator.add_parser("autopilot", help="autopilot: server health").add_subparsers(
        dest="action", metavar="ACTION")
    autopilot.required = True
    state = autopilot.add_parser("state", help="print the health of every server and the failure tolerance")
    add_http_flags(state)
    state.set_defaults(func=cmd_autopilot_state)
    get_config = autopilot.add_parser("get-config", help="print the autopilot configuration")
    add_http_flags(get_config)
    get_config.set_defaults(func=cmd_autopilot_get)
    set_config = autopilot.add_parser("set-config", help="change the autopilot configuration")
    set_config.add_argument("-cleanup-dead-servers", "--cleanup-dead-servers", default=None, metavar="BOOL",
                            help="remove dead servers automatically (true|false)")
    set_config.add_argument("-last-contact-threshold", "--last-contact-threshold", default=None, metavar="DURATION")
    set_config.add_argument("-max-trailing-logs", "--max-trailing-logs", type=int, default=None, metavar="N")
    set_config.add_argument("-min-quorum", "--min-quorum", type=int, default=None, metavar="N",
                            help="never let dead-server cleanup go below this many voters")
    set_config.add_argument("-server-stabilization-time", "--server-stabilization-time", default=None,
                            metavar="DURATION", help="how long a server must be dead before cleanup removes it")
    add_http_flags(set_config)
    set_config.set_defaults(func=cmd_autopilot_set)

    leave = sub.add_parser("leave", help="make the server leave the datacenter gracefully, then stop")
    add_http_flags(leave)
    leave.set_defaults(func=cmd_leave)

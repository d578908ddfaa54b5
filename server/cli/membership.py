"""CLI for live Raft membership, as Consul's: `operator raft transfer-leader [-id]`,
`operator raft remove-peer -address|-id` and `leave` (server/http/routes_operator.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from meshfed.server.cli.http import CLIError, http_request


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


def cmd_leave(ns: argparse.Namespace) -> int:
    http_request(ns, "PUT", "/v1/agent/leave")
    print("Graceful leave complete")
    return 0


def add_membership_commands(sub: Any, raft: Any, add_http_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """`sub`: the top-level subcommands; `raft`: the `operator raft` ones."""
    transfer = raft.add_parser("transfer-leader", help="move Raft leadership to another server")
    transfer.add_argument("-id", "--id", default="", help="the server to lead (default: the most caught-up)")
    add_http_flags(transfer)
    transfer.set_defaults(func=cmd_transfer_leader)

    remove = raft.add_parser("remove-peer", help="remove a server from the Raft configuration")
    remove.add_argument("-id", "--id", default="", help="the server's ID (its node name)")
    remove.add_argument("-address", "--address", default="", help="the server's address (ip:port)")
    add_http_flags(remove)
    remove.set_defaults(func=cmd_remove_peer)

    leave = sub.add_parser("leave", help="make the server leave the datacenter gracefully, then stop")
    add_http_flags(leave)
    leave.set_defaults(func=cmd_leave)

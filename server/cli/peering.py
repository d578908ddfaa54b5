"""`meshfed peering generate-token|establish|list|read|delete`: Consul's peering commands, one to
one onto /v1/peering* (reference peering.md §6), with Consul's output lines so runbooks read the
same. `main.py` hands in its HTTP request function, so this module does not import main."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

Request = Callable[[argparse.Namespace, str, str, Any], Any]


class PeeringCommandError(Exception):
    """A usage error Consul reports with its own text (exit 1)."""


def _required(ns: argparse.Namespace, flag: str) -> str:
    value = getattr(ns, flag.replace("-", "_"), None)
    if not value:
        raise PeeringCommandError(f"Missing the required -{flag} flag")
    return str(value)


def _meta(pairs: list[str] | None) -> dict[str, str]:
    meta = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PeeringCommandError(f"invalid -meta {pair!r}: want key=value")
        meta[key] = value
    return meta


def cmd_generate_token(ns: argparse.Namespace, request: Request) -> int:
    body: dict[str, Any] = {"PeerName": _required(ns, "name"), "Meta": _meta(ns.meta)}
    if ns.server_external_addresses:
        body["ServerExternalAddresses"] = ns.server_external_addresses.split(",")
    answer = request(ns, "POST", "/v1/peering/token", body)
    print(json.dumps(answer, indent=2) if ns.format == "json" else answer["PeeringToken"])
    return 0


def cmd_establish(ns: argparse.Namespace, request: Request) -> int:
    name = _required(ns, "name")
    body = {"PeerName": name, "PeeringToken": _required(ns, "peering-token"), "Meta": _meta(ns.meta)}
    request(ns, "POST", "/v1/peering/establish", body)
    print(f"Successfully established peering connection with {name}")
    return 0


def _count(peering: dict[str, Any], key: str) -> int:
    return len((peering.get("StreamStatus") or {}).get(key) or [])


def list_lines(peerings: list[dict[str, Any]]) -> list[str]:
    if not peerings:
        return ["There are no peering connections."]
    rows = [("Name", "State", "Imported Svcs", "Exported Svcs", "Meta")]
    for p in sorted(peerings, key=lambda p: p["Name"]):
        meta = ",".join(f"{k}={v}" for k, v in sorted((p.get("Meta") or {}).items()))
        rows.append((p["Name"], p["State"], str(_count(p, "ImportedServices")), str(_count(p, "ExportedServices")), meta))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def read_lines(p: dict[str, Any]) -> list[str]:
    status = p.get("StreamStatus") or {}
    fields = [
        ("Name", p["Name"]), ("ID", p["ID"]), ("State", p["State"]), ("PeerID", p.get("PeerID", "")),
        ("PeerServerName", p.get("PeerServerName", "")), ("PeerCAPems", len(p.get("PeerCAPems") or [])),
        ("PeerServerAddresses", ", ".join(p.get("PeerServerAddresses") or [])),
        ("Imported Services", ", ".join(status.get("ImportedServices") or [])),
        ("Exported Services", ", ".join(status.get("ExportedServices") or [])),
        ("Create Index", p["CreateIndex"]), ("Modify Index", p["ModifyIndex"]),
    ]
    return [f"{label}: {value}" for label, value in fields]


def cmd_list(ns: argparse.Namespace, request: Request) -> int:
    peerings = request(ns, "GET", "/v1/peerings", None) or []
    print(json.dumps(peerings, indent=2) if ns.format == "json" else "\n".join(list_lines(peerings)))
    return 0


def cmd_read(ns: argparse.Namespace, request: Request) -> int:
    name = _required(ns, "name")
    try:
        peering = request(ns, "GET", f"/v1/peering/{name}", None)
    except Exception as exc:  # main's CLIError; its text carries the status
        if ": HTTP 404:" in str(exc):
            raise PeeringCommandError(f'No peering with name "{name}" found.') from None
        raise
    print(json.dumps(peering, indent=2) if ns.format == "json" else "\n".join(read_lines(peering)))
    return 0


def cmd_delete(ns: argparse.Namespace, request: Request) -> int:
    name = _required(ns, "name")
    request(ns, "DELETE", f"/v1/peering/{name}", None)
    print(f"Successfully submitted peering connection, {name}, for deletion")
    return 0


def add_commands(sub: Any, add_http_flags: Callable[[argparse.ArgumentParser], None], request: Request) -> None:
    actions = sub.add_parser("peering", help="connect independent clusters").add_subparsers(
        dest="action", metavar="ACTION")
    actions.required = True

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace, Request], int],
                *, named: bool = True, formatted: bool = False) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        add_http_flags(parser)
        if named:
            parser.add_argument("-name", "--name", dest="name", help="the peering's local name")
        if formatted:
            parser.add_argument("-format", "--format", dest="format", choices=("pretty", "json"), default="pretty")
        parser.set_defaults(func=lambda ns: func(ns, request))
        return parser

    generate = command("generate-token", "print a token a peer establishes with", cmd_generate_token, formatted=True)
    generate.add_argument("-server-external-addresses", "--server-external-addresses",
                          dest="server_external_addresses", help="comma-separated host:port a peer dials")
    generate.add_argument("-meta", "--meta", dest="meta", action="append", help="key=value (repeatable)")
    establish = command("establish", "establish a peering with a token from the peer", cmd_establish)
    establish.add_argument("-peering-token", "--peering-token", dest="peering_token")
    establish.add_argument("-meta", "--meta", dest="meta", action="append", help="key=value (repeatable)")
    command("list", "list peerings", cmd_list, named=False, formatted=True)
    command("read", "show one peering", cmd_read, formatted=True)
    command("delete", "delete a peering", cmd_delete)

"""`meshfed config write|read|list|delete` and `meshfed intention create|check|delete|list|get`.

`config write -` reads the entry from stdin, as Consul's does, so `cat web.hcl | meshfed config
write -` and heredocs work. `intention get` takes `SRC DST` (the exact-match API) or one intention
ID, and prints Consul's key/value layout; `intention list` prints Consul's table.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote, urlencode

from meshfed.server.cli.http import CLIError, add_http_flags, http_request, http_request_optional, table


def cmd_config_write(ns: argparse.Namespace) -> int:
    from meshfed.fsm.config_entries import ConfigEntryError
    from meshfed.server.config.hcl import from_hcl

    source = "stdin" if ns.file == "-" else ns.file
    try:
        if ns.file == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(ns.file, "rb") as f:
                text = f.read()
        raw = from_hcl(text)
    except OSError as exc:
        raise CLIError(f"cannot read {source}: {exc.strerror}") from None
    except ConfigEntryError as exc:
        raise CLIError(f"{source}: {exc}") from None
    query = f"?cas={ns.cas}" if ns.cas is not None else ""
    written = http_request(ns, "PUT", f"/v1/config{query}", raw)
    kind, name = raw.get("Kind") or raw.get("kind"), raw.get("Name") or raw.get("name") or ""
    if written is not True:
        raise CLIError(f"config entry {kind}/{name} was not written (check-and-set failed)")
    print(f'Config entry written: {kind}/{name}')
    return 0


def cmd_config_read(ns: argparse.Namespace) -> int:
    print(json.dumps(http_request(ns, "GET", f"/v1/config/{ns.kind}/{ns.name}"), indent=4))
    return 0


def cmd_config_list(ns: argparse.Namespace) -> int:
    for entry in http_request(ns, "GET", f"/v1/config/{ns.kind}"):
        print(entry.get("Name", ""))
    return 0


def cmd_config_delete(ns: argparse.Namespace) -> int:
    query = f"?cas={ns.cas}" if ns.cas is not None else ""
    result = http_request(ns, "DELETE", f"/v1/config/{ns.kind}/{ns.name}{query}")
    if ns.cas is not None and result is not True:
        raise CLIError(f"config entry {ns.kind}/{ns.name} was not deleted (check-and-set failed)")
    print(f"Config entry deleted: {ns.kind}/{ns.name}")
    return 0


def _exact(source: str, destination: str) -> str:
    return "/v1/connect/intentions/exact?" + urlencode({"source": source, "destination": destination})


def cmd_intention_create(ns: argparse.Namespace) -> int:
    action = "deny" if ns.deny else "allow"
    body: dict[str, Any] = {"SourceType": "consul", "Action": action}
    if ns.description:
        body["Description"] = ns.description
    if not ns.replace and http_request_optional(ns, "GET", _exact(ns.source, ns.destination)) is not None:
        raise CLIError(f"an intention {ns.source} => {ns.destination} exists already; pass -replace to change it")
    http_request(ns, "PUT", _exact(ns.source, ns.destination), body)
    print(f"Created: {ns.source} => {ns.destination} ({action})")
    return 0


def cmd_intention_check(ns: argparse.Namespace) -> int:
    query = urlencode({"source": ns.source, "destination": ns.destination})
    allowed = http_request(ns, "GET", f"/v1/connect/intentions/check?{query}")["Allowed"]
    print("Allowed" if allowed else "Denied")
    return 0 if allowed else 2


def cmd_intention_delete(ns: argparse.Namespace) -> int:
    http_request(ns, "DELETE", _exact(ns.source, ns.destination))
    print("Intention deleted.")
    return 0


def _action(intention: dict[str, Any]) -> str:
    # An L7 intention has Permissions instead of one Action (Consul prints it so).
    return intention.get("Action") or ("<permissions>" if intention.get("Permissions") else "")


def cmd_intention_list(ns: argparse.Namespace) -> int:
    rows: list[tuple[Any, ...]] = [("ID", "Source", "Action", "Destination", "Precedence")]
    for i in http_request(ns, "GET", "/v1/connect/intentions"):
        rows.append((i.get("ID", ""), i.get("SourceName", ""), _action(i), i.get("DestinationName", ""),
                     i.get("Precedence", "")))
    if len(rows) == 1:
        print("There are no intentions.")
    else:
        print(table(rows))
    return 0


def cmd_intention_get(ns: argparse.Namespace) -> int:
    if ns.destination is None:
        intention = http_request(ns, "GET", f"/v1/connect/intentions/{quote(ns.source, safe='')}")
    else:
        intention = http_request(ns, "GET", _exact(ns.source, ns.destination))
    rows = [("Source:", intention.get("SourceName", "")), ("Destination:", intention.get("DestinationName", "")),
            ("Action:", _action(intention))]
    for label, key in (("ID:", "ID"), ("Description:", "Description"), ("Precedence:", "Precedence"),
                       ("Created At:", "CreatedAt")):
        if intention.get(key) not in (None, ""):
            rows.append((label, intention[key]))
    print(table(rows))
    return 0


def add_commands(sub: Any) -> None:
    config = sub.add_parser("config", help="config entries").add_subparsers(dest="action", metavar="ACTION")
    config.required = True
    write = config.add_parser("write", help="write a config entry from an HCL or JSON file, or - for stdin")
    write.add_argument("file", help="the file, or - to read the entry from stdin")
    write.add_argument("-cas", "--cas", type=int, default=None, help="check-and-set on this ModifyIndex")
    write.set_defaults(func=cmd_config_write)
    read = config.add_parser("read", help="print a config entry")
    list_ = config.add_parser("list", help="list the config entries of a kind")
    delete = config.add_parser("delete", help="delete a config entry")
    for parser in (read, list_, delete):
        parser.add_argument("-kind", "--kind", required=True)
    for parser in (read, delete):
        parser.add_argument("-name", "--name", required=True)
    delete.add_argument("-cas", "--cas", type=int, default=None)
    read.set_defaults(func=cmd_config_read)
    list_.set_defaults(func=cmd_config_list)
    delete.set_defaults(func=cmd_config_delete)
    for parser in (write, read, list_, delete):
        add_http_flags(parser)

    intention = sub.add_parser("intention", help="service-to-service intentions").add_subparsers(
        dest="action", metavar="ACTION")
    intention.required = True
    create = intention.add_parser("create", help="allow (default) or deny SRC => DST")
    create.add_argument("-deny", "--deny", action="store_true")
    create.add_argument("-allow", "--allow", action="store_true")
    create.add_argument("-replace", "--replace", action="store_true", help="replace an existing intention")
    create.add_argument("-description", "--description", default="")
    create.set_defaults(func=cmd_intention_create)
    check = intention.add_parser("check", help="is SRC allowed to connect to DST? (exit 0 yes, 2 no)")
    check.set_defaults(func=cmd_intention_check)
    remove = intention.add_parser("delete", help="delete the intention SRC => DST")
    remove.set_defaults(func=cmd_intention_delete)
    for parser in (create, check, remove):
        parser.add_argument("source")
        parser.add_argument("destination")
    listing = intention.add_parser("list", help="list every intention")
    listing.set_defaults(func=cmd_intention_list)
    get = intention.add_parser("get", help="show the intention SRC DST, or the one with this ID")
    get.add_argument("source", metavar="SRC|ID")
    get.add_argument("destination", metavar="DST", nargs="?", default=None)
    get.set_defaults(func=cmd_intention_get)
    for parser in (create, check, remove, listing, get):
        add_http_flags(parser)

"""Day-2 commands an operator reaches for, as Consul's: `version`, `info`, `validate`, `reload`,
`monitor` and `members [-wan]`.

`validate` needs no server: it runs the agent's own loader (server/config/), so it accepts and
refuses exactly what `meshfed agent` would. The others use the HTTP API like any client.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any
from urllib.parse import urlencode

from meshfed.server.cli.http import CLIError, add_http_flags, http_request, open_request, table
from meshfed.server.config import config_warnings, load

MEMBER_STATUS = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}  # serf's states


def meshfed_version() -> str:
    try:
        return package_version("meshfed")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0"


def cmd_version(ns: argparse.Namespace) -> int:
    print(f"meshfed v{meshfed_version()}")
    return 0


def render_info(stats: dict[str, dict[str, Any]]) -> str:
    """Consul's `info` layout: sections and keys sorted, `key = value` indented by a tab."""
    lines = []
    for section in sorted(stats):
        lines.append(f"{section}:")
        lines.extend(f"\t{key} = {value}" for key, value in sorted(stats[section].items()))
    return "\n".join(lines)


def cmd_info(ns: argparse.Namespace) -> int:
    print(render_info(http_request(ns, "GET", "/v1/agent/self").get("Stats") or {}))
    return 0


def cmd_validate(ns: argparse.Namespace) -> int:
    from meshfed.server.cli.flags import _config_files
    from meshfed.server.config.key_file import read_key_file

    sources = []
    for path in ns.paths:
        from pathlib import Path

        sources.append(("dir" if Path(path).is_dir() else "file", path))
    files = _config_files(sources)
    if not files:
        raise CLIError(f"no .hcl or .json config files in {', '.join(ns.paths)}")
    overrides = {"encrypt": read_key_file(ns.encrypt_file)} if ns.encrypt_file else None
    config = load(files, overrides)  # a ConfigError names file, key and reason; main exits 1
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    print("Configuration is valid!")
    return 0


def cmd_reload(ns: argparse.Namespace) -> int:
    http_request(ns, "PUT", "/v1/agent/reload")
    print("Configuration reload triggered")
    return 0


def cmd_monitor(ns: argparse.Namespace) -> int:
    """Print the server's log lines as they come, until interrupted or the server goes away."""
    path = "/v1/agent/monitor?" + urlencode({"loglevel": ns.log_level})
    with open_request(ns, "GET", path, timeout=None) as response:
        try:
            for raw in response:
                sys.stdout.write(raw.decode("utf-8", "replace"))
                sys.stdout.flush()
        except KeyboardInterrupt:
            return 0
        except OSError as exc:
            raise CLIError(f"the monitor stream broke: {exc}") from None
    return 0


def _local_rows(ns: argparse.Namespace, wan: bool) -> tuple[str, list[tuple[Any, ...]]]:
    members = http_request(ns, "GET", "/v1/agent/members")
    dc = members[0]["Tags"].get("dc", "") if members else ""
    rows = []
    for m in members:
        name = f'{m["Name"]}.{m["Tags"].get("dc", "")}' if wan else m["Name"]
        # -wan lists every DC with one kind of address: the server RPC address, which is what a
        # remote DC's Raft configuration reports (the LAN list shows the Raft address, as before).
        address = (m["Tags"].get("rpc_addr") if wan else "") or f'{m["Addr"]}:{m["Port"]}'
        rows.append((name, address, MEMBER_STATUS.get(m["Status"], "unknown"),
                     "server", m["Tags"].get("dc", ""), m["Tags"].get("leader", "")))
    return dc, rows


def _remote_rows(ns: argparse.Namespace, dc: str) -> list[tuple[Any, ...]]:
    config = http_request(ns, "GET", "/v1/operator/raft/configuration?" + urlencode({"dc": dc}))
    return [(f'{s["Node"]}.{dc}', s["Address"], "alive" if s.get("Healthy", True) else "failed", "server", dc,
             str(bool(s.get("Leader"))).lower()) for s in config["Servers"]]


def cmd_members(ns: argparse.Namespace) -> int:
    """Servers of this DC; with -wan, the servers of every DC. The local DC answers from its members
    list; every other DC is asked through the WAN for its Raft configuration (no gossip to ask)."""
    local_dc, rows = _local_rows(ns, ns.wan)
    failed = []
    if ns.wan:
        for dc in http_request(ns, "GET", "/v1/catalog/datacenters"):
            if dc == local_dc:
                continue
            try:
                rows.extend(_remote_rows(ns, dc))
            except CLIError as exc:
                failed.append(f"{dc}: {exc}")
    print(table([("Node", "Address", "Status", "Type", "DC", "Leader"), *rows]))
    for line in failed:
        print(f"error: cannot list the servers of {line}", file=sys.stderr)
    return 1 if failed else 0


def add_commands(sub: Any) -> None:
    version = sub.add_parser("version", help="print the meshfed version")
    version.set_defaults(func=cmd_version)

    info = sub.add_parser("info", help="print a server's debugging information (from /v1/agent/self)")
    add_http_flags(info)
    info.set_defaults(func=cmd_info)

    validate = sub.add_parser("validate", help="check config files or directories as the agent would load them")
    validate.add_argument("paths", nargs="+", metavar="FILE|DIR")
    validate.add_argument("-encrypt-file", "--encrypt-file", dest="encrypt_file", default=None, metavar="FILE",
                          help="the cluster key file the agent is given with -encrypt-file")
    validate.set_defaults(func=cmd_validate)

    reload = sub.add_parser("reload", help="make a server re-read its config files (log_level changes live)")
    add_http_flags(reload)
    reload.set_defaults(func=cmd_reload)

    monitor = sub.add_parser("monitor", help="stream a server's log lines until interrupted")
    monitor.add_argument("-log-level", "--log-level", dest="log_level", default="info",
                         help="trace, debug, info, warn or error (default info)")
    add_http_flags(monitor)
    monitor.set_defaults(func=cmd_monitor)

    members = sub.add_parser("members", help="list the servers of this datacenter (-wan: of every datacenter)")
    members.add_argument("-wan", "--wan", action="store_true", help="the servers of every datacenter")
    add_http_flags(members)
    members.set_defaults(func=cmd_members)

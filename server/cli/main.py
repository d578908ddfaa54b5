"""`meshfed` command line, in Consul's single-dash style.

Subcommands that talk to a running server use its HTTP API (`-http-addr`, or CONSUL_HTTP_ADDR /
MESHFED_HTTP_ADDR, default http://127.0.0.1:8500), exactly as an operator's curl would, so the CLI
never has powers the API lacks. Errors print one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.server.cli.acl import ACLCommandError
from meshfed.server.cli.acl import add_commands as add_acl_commands
from meshfed.server.cli.connect import ProxyCommandError
from meshfed.server.cli.connect import add_commands as add_connect_commands
from meshfed.server.cli.entries import add_commands as add_entry_commands
from meshfed.server.cli.federation import add_commands as add_federation_commands
from meshfed.server.cli.flags import add_agent_arguments, agent_overrides, config_files
from meshfed.server.cli.http import DEFAULT_HTTP_ADDR, CLIError, http_addr, http_request, table
from meshfed.server.cli.http import add_http_flags as _add_http_flags
from meshfed.server.cli.membership import add_membership_commands
from meshfed.server.cli.operate import add_commands as add_operate_commands
from meshfed.server.cli.operate import meshfed_version
from meshfed.server.cli.peering import PeeringCommandError
from meshfed.server.cli.peering import add_commands as add_peering_commands
from meshfed.server.cli.snapshot import SnapshotCommandError
from meshfed.server.cli.snapshot import add_commands as add_snapshot_commands
from meshfed.server.cli.tls import add_commands as add_tls_commands
from meshfed.server.config.loader import ConfigError, generate_key, load

LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR}


# ---- subcommands ------------------------------------------------------------------------------


def cmd_agent(ns: argparse.Namespace) -> int:
    files, overrides, dev = agent_overrides(ns)
    config = load(files, overrides, dev=dev)
    from meshfed.server import log_stream
    from meshfed.server.agent import Agent, StartupError
    from meshfed.server.reload import Reloader

    tokens = config.acl.tokens
    # What the monitor stream must never carry, even if a log call were to quote it by mistake.
    secrets = (config.encrypt, tokens.initial_management, tokens.replication, tokens.agent, tokens.default)
    logs = log_stream.install(config.log_level, lambda: secrets)
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    reloader = Reloader(lambda: config_files(ns), overrides, dev, config,
                        set_log_level=lambda name: logs.set_console_level(log_stream.level_number(name)))
    try:
        return asyncio.run(Agent(config, reloader=reloader, logs=logs).run())
    except StartupError as exc:
        raise CLIError(str(exc)) from None


def cmd_keygen(ns: argparse.Namespace) -> int:
    print(generate_key())
    return 0


def cmd_list_peers(ns: argparse.Namespace) -> int:
    config = http_request(ns, "GET", "/v1/operator/raft/configuration")
    rows = [("Node", "ID", "Address", "State", "Voter", "RaftProtocol", "Last Contact")]
    for s in config["Servers"]:
        state = "leader" if s["Leader"] else "follower" if s.get("Healthy", True) else "unreachable"
        rows.append((s["Node"], s["ID"], s["Address"], state, str(s["Voter"]).lower(), s["ProtocolVersion"],
                     s.get("LastContact") or "never"))
    print(table(rows))
    return 0


def cmd_fed_state_delete(ns: argparse.Namespace) -> int:
    http_request(ns, "DELETE", f"/v1/internal/federation-state/{ns.datacenter}")
    print(f"Federation state of {ns.datacenter} deleted (in the primary; secondaries follow by replication)")
    return 0


def cmd_gateway(ns: argparse.Namespace) -> int:
    from meshfed.server.dataplane.gateway import Gateway, GatewayConfig, parse_address
    from meshfed.server.dataplane.gateway_acl import gateway_token

    try:
        bind = parse_address(ns.bind, "-bind", 8443)
        cfg = GatewayConfig(
            datacenter=ns.dc,
            node=ns.node or f"mesh-gateway-{ns.dc}-{bind[0]}",
            bind=bind,
            wan_address=parse_address(ns.wan_address, "-wan-address", bind[1]) if ns.wan_address else bind,
            http_addrs=tuple(ns.http_addr or [DEFAULT_HTTP_ADDR]),
            admin_bind=parse_address(ns.admin_bind, "-admin-bind") if ns.admin_bind else None,
            expose_servers=ns.expose_servers,
            service_id=ns.service_id,
            domain=ns.domain,
            ttl=parse_duration(ns.ttl),
            token=gateway_token(ns.token, ns.token_file, os.environ),
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    logging.basicConfig(level=LOG_LEVELS.get(ns.log_level, logging.INFO),
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s", stream=sys.stderr)
    return asyncio.run(Gateway(cfg).run())


def cmd_demo(ns: argparse.Namespace) -> int:
    from meshfed.server.cli.demo import run_demo

    return run_demo(base=ns.base, data_dir=ns.data_dir, keep_data=ns.keep_data, peering=ns.peering)


# ---- parser -------------------------------------------------------------------------------------


class _CommandParser(argparse.ArgumentParser):
    """Leaves itself in the namespace it fills, so an unknown flag can be reported with the usage
    of the command that did not know it. `add_subparsers` makes its sub-parsers of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self.set_defaults(command_parser=self)

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        """No prefix matching at all. Python 3.11 honours allow_abbrev only for `--flags`: a single-dash
        `-expose-server` still matched `-expose-servers`, so a typo silently meant another flag.
        Every flag here is a long single-dash name, so nothing is lost (`-flag=value` is matched
        exactly before this is asked)."""
        return []


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandParser(prog="meshfed", description="meshfed: federate datacenters through mesh gateways",
                                     allow_abbrev=False)
    # Hidden from the usage line (`meshfed version` is listed); prints what `meshfed version` does.
    parser.add_argument("-version", "--version", action="version", version=f"meshfed v{meshfed_version()}",
                        help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    agent = sub.add_parser("agent", help="run a server", allow_abbrev=False)
    add_agent_arguments(agent)
    agent.set_defaults(func=cmd_agent)

    keygen = sub.add_parser("keygen", help="make a cluster key for `encrypt`")
    keygen.set_defaults(func=cmd_keygen)

    add_operate_commands(sub)
    add_acl_commands(sub, _add_http_flags, http_request)
    add_federation_commands(sub, _add_http_flags, http_request)
    add_connect_commands(sub, http_request)
    add_snapshot_commands(sub, _add_http_flags, http_addr)
    add_peering_commands(sub, _add_http_flags, http_request)

    operator = sub.add_parser("operator", help="operator commands").add_subparsers(dest="area", metavar="AREA")
    operator.required = True
    raft = operator.add_parser("raft", help="Raft operations").add_subparsers(dest="action", metavar="ACTION")
    raft.required = True
    peers = raft.add_parser("list-peers", help="print the Raft configuration")
    _add_http_flags(peers)
    peers.set_defaults(func=cmd_list_peers)
    add_membership_commands(sub, operator, raft, _add_http_flags)

    fed_state = operator.add_parser("federation-state", help="federation-state operations").add_subparsers(
        dest="action", metavar="ACTION")
    fed_state.required = True
    fed_delete = fed_state.add_parser("delete", help="remove a decommissioned datacenter's federation state")
    fed_delete.add_argument("datacenter")
    _add_http_flags(fed_delete)
    fed_delete.set_defaults(func=cmd_fed_state_delete)

    add_tls_commands(sub)
    add_entry_commands(sub)

    gateway = sub.add_parser("gateway", help="run an SNI-routing mesh gateway", allow_abbrev=False)
    gateway.add_argument("-dc", "--dc", required=True, help="datacenter of this gateway")
    gateway.add_argument("-bind", "--bind", required=True, help="listen address host:port (LAN)")
    gateway.add_argument("-wan-address", "--wan-address", default="", help="address other DCs dial (default: -bind)")
    gateway.add_argument("-expose-servers", "--expose-servers", action="store_true",
                         help="route server RPC (registers with consul-wan-federation=1)")
    gateway.add_argument("-http-addr", "--http-addr", action="append", help="a local server's HTTP API (repeatable)")
    gateway.add_argument("-admin-bind", "--admin-bind", default="", help="host:port for /metrics and /v1/gateway/routes")
    gateway.add_argument("-node", "--node", default="", help="catalog node name of this gateway")
    gateway.add_argument("-service-id", "--service-id", default="mesh-gateway")
    gateway.add_argument("-domain", "--domain", default="consul")
    gateway.add_argument("-ttl", "--ttl", default="10s", help="TTL of the heartbeat check")
    gateway.add_argument("-token", "--token", default="",
                         help="ACL token (visible in the process list: prefer -token-file or CONSUL_HTTP_TOKEN)")
    gateway.add_argument("-token-file", "--token-file", dest="token_file", default="",
                         help="file holding the ACL token (after -token, before CONSUL_HTTP_TOKEN)")
    gateway.add_argument("-log-level", "--log-level", default="info")
    gateway.set_defaults(func=cmd_gateway)

    demo = sub.add_parser("demo", help="start two federated datacenters (or, with -peering, two peered clusters) "
                                       "on 127.0.x.y and print their endpoints")
    demo.add_argument("-base", "--base", default="127.0.1", help="first three octets of the loopback block (default 127.0.1)")
    demo.add_argument("-data-dir", "--data-dir", dest="data_dir", default="", help="where to keep data, never removed (default: a temp dir, removed on exit)")
    demo.add_argument("-keep-data", "--keep-data", dest="keep_data", action="store_true",
                      help="keep the temp dir (data, certificates, keys, logs) on exit")
    demo.add_argument("-peering", "--peering", action="store_true",
                      help="two independent clusters joined by cluster peering instead of WAN federation")
    demo.set_defaults(func=cmd_demo)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse without running; exits 2 with the usage of the command that refused an argument."""
    # argparse hands a subcommand's unknown arguments back to the top-level parser, which would
    # print the top-level usage (`meshfed agent -bogus` listed the commands, not the agent's flags);
    # the deepest command parser reached reports them instead.
    ns, unknown = build_parser().parse_known_args(argv)
    if unknown:
        ns.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    try:
        return int(ns.func(ns) or 0)
    except (CLIError, ConfigError, ACLCommandError, ProxyCommandError, SnapshotCommandError,
            PeeringCommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

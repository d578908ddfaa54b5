"""`meshfed` command line, in Consul's single-dash style.

Subcommands that talk to a running server use its HTTP API (`-http-addr`, or CONSUL_HTTP_ADDR /
MESHFED_HTTP_ADDR, default http://127.0.0.1:8500), exactly as an operator's curl would, so the CLI
never has powers the API lacks. Errors print one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.server.cli.acl import ACLCommandError
from meshfed.server.cli.acl import add_commands as add_acl_commands
from meshfed.server.cli.connect import ProxyCommandError
from meshfed.server.cli.connect import add_commands as add_connect_commands
from meshfed.server.cli.federation import add_commands as add_federation_commands
from meshfed.server.cli.flags import add_agent_arguments, agent_overrides
from meshfed.server.cli.snapshot import SnapshotCommandError
from meshfed.server.cli.snapshot import add_commands as add_snapshot_commands
from meshfed.server.config.loader import ConfigError, generate_key, load

DEFAULT_HTTP_ADDR = "http://127.0.0.1:8500"
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR}


class CLIError(Exception):
    pass


def http_addr(ns: argparse.Namespace) -> str:
    addr = getattr(ns, "http_addr", None) or os.environ.get("MESHFED_HTTP_ADDR") or os.environ.get("CONSUL_HTTP_ADDR")
    addr = addr or DEFAULT_HTTP_ADDR
    return addr if "://" in addr else f"http://{addr}"


def http_request(ns: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    url = http_addr(ns).rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    token = getattr(ns, "token", None) or os.environ.get("CONSUL_HTTP_TOKEN")
    if token:
        request.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        message = exc.read().decode(errors="replace").strip() or exc.reason
        raise CLIError(f"{method} {path}: HTTP {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise CLIError(f"cannot reach {url}: {exc.reason}") from None
    return json.loads(raw) if raw.strip() else None


def _table(rows: Sequence[Sequence[Any]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


# ---- subcommands ------------------------------------------------------------------------------


def cmd_agent(ns: argparse.Namespace) -> int:
    files, overrides, dev = agent_overrides(ns)
    config = load(files, overrides, dev=dev)
    logging.basicConfig(
        level=LOG_LEVELS.get(config.log_level, logging.INFO),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    from meshfed.server.agent import Agent, StartupError

    try:
        return asyncio.run(Agent(config).run())
    except StartupError as exc:
        raise CLIError(str(exc)) from None


def cmd_keygen(ns: argparse.Namespace) -> int:
    print(generate_key())
    return 0


MEMBER_STATUS = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}  # serf's states


def cmd_members(ns: argparse.Namespace) -> int:
    members = http_request(ns, "GET", "/v1/agent/members")
    rows = [("Node", "Address", "Status", "Type", "DC", "Leader")]
    for m in members:
        rows.append((m["Name"], f'{m["Addr"]}:{m["Port"]}', MEMBER_STATUS.get(m["Status"], "unknown"),
                     "server", m["Tags"].get("dc", ""), m["Tags"].get("leader", "")))
    print(_table(rows))
    return 0


def cmd_list_peers(ns: argparse.Namespace) -> int:
    config = http_request(ns, "GET", "/v1/operator/raft/configuration")
    rows = [("Node", "ID", "Address", "State", "Voter", "RaftProtocol", "Last Contact")]
    for s in config["Servers"]:
        state = "leader" if s["Leader"] else "follower" if s.get("Healthy", True) else "unreachable"
        rows.append((s["Node"], s["ID"], s["Address"], state, str(s["Voter"]).lower(), s["ProtocolVersion"],
                     s.get("LastContact") or "never"))
    print(_table(rows))
    return 0


def cmd_fed_state_delete(ns: argparse.Namespace) -> int:
    http_request(ns, "DELETE", f"/v1/internal/federation-state/{ns.datacenter}")
    print(f"Federation state of {ns.datacenter} deleted (in the primary; secondaries follow by replication)")
    return 0


def cmd_tls_ca_create(ns: argparse.Namespace) -> int:
    from meshfed.rpc.tls import create_ca

    files = create_ca(ns.dir, domain=ns.domain, days=ns.days)
    print(f"==> Saved {files.cert_file}\n==> Saved {files.key_file}")
    return 0


def cmd_tls_cert_create(ns: argparse.Namespace) -> int:
    from meshfed.rpc.tls import CertFiles, create_server_cert

    if not ns.server:
        raise CLIError("only server certificates are supported: pass -server")
    domain = ns.domain
    ca = CertFiles(ns.ca or os.path.join(ns.dir, f"{domain}-agent-ca.pem"),
                   ns.key or os.path.join(ns.dir, f"{domain}-agent-ca-key.pem"))
    for path in (ca.cert_file, ca.key_file):
        if not os.path.exists(path):
            raise CLIError(f"{path} not found: run `meshfed tls ca create` first or pass -ca/-key")
    files = create_server_cert(ns.dir, ca, ns.dc, node=ns.node, domain=domain, days=ns.days,
                               extra_dns=ns.additional_dnsname or (), extra_ips=ns.additional_ipaddress or ())
    print(f"==> Saved {files.cert_file}\n==> Saved {files.key_file}")
    return 0


def cmd_gateway(ns: argparse.Namespace) -> int:
    from meshfed.server.dataplane.gateway import Gateway, GatewayConfig, parse_address

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
            token=ns.token or os.environ.get("CONSUL_HTTP_TOKEN", ""),
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    logging.basicConfig(level=LOG_LEVELS.get(ns.log_level, logging.INFO),
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s", stream=sys.stderr)
    return asyncio.run(Gateway(cfg).run())


def cmd_config_write(ns: argparse.Namespace) -> int:
    from meshfed.fsm.config_entries import ConfigEntryError
    from meshfed.server.config.hcl import from_hcl

    try:
        with open(ns.file, "rb") as f:
            raw = from_hcl(f.read())
    except OSError as exc:
        raise CLIError(f"cannot read {ns.file}: {exc.strerror}") from None
    except ConfigEntryError as exc:
        raise CLIError(f"{ns.file}: {exc}") from None
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


def _exact(ns: argparse.Namespace) -> str:
    from urllib.parse import urlencode

    return "/v1/connect/intentions/exact?" + urlencode({"source": ns.source, "destination": ns.destination})


def cmd_intention_create(ns: argparse.Namespace) -> int:
    action = "deny" if ns.deny else "allow"
    body: dict[str, Any] = {"SourceType": "consul", "Action": action}
    if ns.description:
        body["Description"] = ns.description
    if not ns.replace and http_request_optional(ns, "GET", _exact(ns)) is not None:
        raise CLIError(f"an intention {ns.source} => {ns.destination} exists already; pass -replace to change it")
    http_request(ns, "PUT", _exact(ns), body)
    print(f"Created: {ns.source} => {ns.destination} ({action})")
    return 0


def cmd_intention_check(ns: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    query = urlencode({"source": ns.source, "destination": ns.destination})
    allowed = http_request(ns, "GET", f"/v1/connect/intentions/check?{query}")["Allowed"]
    print("Allowed" if allowed else "Denied")
    return 0 if allowed else 2


def cmd_intention_delete(ns: argparse.Namespace) -> int:
    http_request(ns, "DELETE", _exact(ns))
    print("Intention deleted.")
    return 0


def http_request_optional(ns: argparse.Namespace, method: str, path: str) -> Any:
    """Like http_request, but a 404 is None."""
    try:
        return http_request(ns, method, path)
    except CLIError as exc:
        if "HTTP 404" in str(exc):
            return None
        raise


def cmd_demo(ns: argparse.Namespace) -> int:
    from meshfed.server.cli.demo import run_demo

    return run_demo(base=ns.base, data_dir=ns.data_dir, keep_data=ns.keep_data)


# ---- parser -------------------------------------------------------------------------------------


def _add_http_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-http-addr", "--http-addr", dest="http_addr", help="HTTP API of a server (host:port or URL)")
    parser.add_argument("-token", "--token", dest="token", help="ACL token")


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    agent = sub.add_parser("agent", help="run a server", allow_abbrev=False)
    add_agent_arguments(agent)
    agent.set_defaults(func=cmd_agent)

    keygen = sub.add_parser("keygen", help="make a cluster key for `encrypt`")
    keygen.set_defaults(func=cmd_keygen)

    members = sub.add_parser("members", help="list the servers of a datacenter")
    _add_http_flags(members)
    members.set_defaults(func=cmd_members)
    add_acl_commands(sub, _add_http_flags, http_request)
    add_federation_commands(sub, _add_http_flags, http_request)
    add_connect_commands(sub, http_request)
    add_snapshot_commands(sub, _add_http_flags, http_addr)

    operator = sub.add_parser("operator", help="operator commands").add_subparsers(dest="area", metavar="AREA")
    operator.required = True
    raft = operator.add_parser("raft", help="Raft operations").add_subparsers(dest="action", metavar="ACTION")
    raft.required = True
    peers = raft.add_parser("list-peers", help="print the Raft configuration")
    _add_http_flags(peers)
    peers.set_defaults(func=cmd_list_peers)

    fed_state = operator.add_parser("federation-state", help="federation-state operations").add_subparsers(
        dest="action", metavar="ACTION")
    fed_state.required = True
    fed_delete = fed_state.add_parser("delete", help="remove a decommissioned datacenter's federation state")
    fed_delete.add_argument("datacenter")
    _add_http_flags(fed_delete)
    fed_delete.set_defaults(func=cmd_fed_state_delete)

    tls = sub.add_parser("tls", help="make TLS material").add_subparsers(dest="area", metavar="AREA")
    tls.required = True
    ca = tls.add_parser("ca", help="certificate authority").add_subparsers(dest="action", metavar="ACTION")
    ca.required = True
    ca_create = ca.add_parser("create", help="create a CA (consul-agent-ca.pem + key)")
    ca_create.add_argument("-domain", "--domain", default="consul")
    ca_create.add_argument("-days", "--days", type=int, default=1825)
    ca_create.add_argument("-dir", "--dir", default=".", help="where to write the files (default: .)")
    ca_create.set_defaults(func=cmd_tls_ca_create)
    cert = tls.add_parser("cert", help="certificates").add_subparsers(dest="action", metavar="ACTION")
    cert.required = True
    cert_create = cert.add_parser("create", help="create a server certificate signed by the CA")
    cert_create.add_argument("-server", "--server", action="store_true", help="a server certificate")
    cert_create.add_argument("-dc", "--dc", default="dc1")
    cert_create.add_argument("-node", "--node", default="", help="adds <node>.server.<dc>.<domain>")
    cert_create.add_argument("-domain", "--domain", default="consul")
    cert_create.add_argument("-days", "--days", type=int, default=365)
    cert_create.add_argument("-ca", "--ca", default="", help="CA certificate (default <domain>-agent-ca.pem)")
    cert_create.add_argument("-key", "--key", default="", help="CA key (default <domain>-agent-ca-key.pem)")
    cert_create.add_argument("-dir", "--dir", default=".", help="where the CA is and the files go (default: .)")
    cert_create.add_argument("-additional-dnsname", "--additional-dnsname", action="append")
    cert_create.add_argument("-additional-ipaddress", "--additional-ipaddress", action="append")
    cert_create.set_defaults(func=cmd_tls_cert_create)

    config = sub.add_parser("config", help="config entries").add_subparsers(dest="action", metavar="ACTION")
    config.required = True
    write = config.add_parser("write", help="write a config entry from an HCL or JSON file")
    write.add_argument("file")
    write.add_argument("-cas", "--cas", type=int, default=None, help="check-and-set on this ModifyIndex")
    write.set_defaults(func=cmd_config_write)
    read = config.add_parser("read", help="print a config entry")
    list_ = config.add_parser("list", help="list the config entries of a kind")
    delete = config.add_parser("delete", help="delete a config entry")
    for sub_parser in (read, list_, delete):
        sub_parser.add_argument("-kind", "--kind", required=True)
    for sub_parser in (read, delete):
        sub_parser.add_argument("-name", "--name", required=True)
    delete.add_argument("-cas", "--cas", type=int, default=None)
    read.set_defaults(func=cmd_config_read)
    list_.set_defaults(func=cmd_config_list)
    delete.set_defaults(func=cmd_config_delete)
    for sub_parser in (write, read, list_, delete):
        _add_http_flags(sub_parser)

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
    for sub_parser in (create, check, remove):
        sub_parser.add_argument("source")
        sub_parser.add_argument("destination")
        _add_http_flags(sub_parser)

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
    gateway.add_argument("-token", "--token", default="")
    gateway.add_argument("-log-level", "--log-level", default="info")
    gateway.set_defaults(func=cmd_gateway)

    demo = sub.add_parser("demo", help="start a local 3-server datacenter on 127.0.x.y and print its endpoints")
    demo.add_argument("-base", "--base", default="127.0.1", help="first three octets of the loopback block (default 127.0.1)")
    demo.add_argument("-data-dir", "--data-dir", dest="data_dir", default="", help="where to keep data, never removed (default: a temp dir, removed on exit)")
    demo.add_argument("-keep-data", "--keep-data", dest="keep_data", action="store_true",
                      help="keep the temp dir (data, certificates, keys, logs) on exit")
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
    except (CLIError, ConfigError, ACLCommandError, ProxyCommandError, SnapshotCommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`meshfed connect proxy`: run meshfed's Connect sidecar (server/dataplane/proxy.py).

`-sidecar-for <service-id>` takes everything from the proxy's registration (the `connect-proxy`
service whose Proxy.DestinationServiceID is that id, as Consul's does); `-service` with
`-upstream name:port[:dc]`, `-listen` and `-service-addr` describe one by flags. The token comes
from `-token-file` or CONSUL_HTTP_TOKEN (or `-token`, which `ps` shows to every local user).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from meshfed.server.dataplane.proxy_config import (
    ProxyConfig,
    ProxyConfigError,
    from_flags,
    from_registration,
    split_address,
)

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR}


class ProxyCommandError(Exception):
    """A bad flag or registration; main prints it like any CLI error."""


def _token(ns: argparse.Namespace) -> str:
    if ns.token_file:
        try:
            with open(ns.token_file) as handle:
                return handle.read().strip()
        except OSError as exc:
            raise ProxyCommandError(f"-token-file {ns.token_file}: {exc.strerror}") from None
    return ns.token or os.environ.get("CONSUL_HTTP_TOKEN", "")


def sidecar_registration(services: Any, service_id: str) -> dict[str, Any]:
    """The one connect-proxy among `/v1/agent/services` whose destination id is `service_id`."""
    found = [s for s in (services or {}).values()
             if isinstance(s, dict) and s.get("Kind") == "connect-proxy"
             and (s.get("Proxy") or {}).get("DestinationServiceID") == service_id]
    if len(found) != 1:
        raise ProxyCommandError(f"-sidecar-for {service_id}: {'no' if not found else 'more than one'} "
                                "connect-proxy registration has that DestinationServiceID")
    return found[0]


def _config(ns: argparse.Namespace, get: Callable[[str], Any]) -> ProxyConfig:
    try:
        if ns.sidecar_for:
            return from_registration(sidecar_registration(get("/v1/agent/services"), ns.sidecar_for))
        return from_flags(ns.service, ns.upstream or [], ns.listen, ns.service_addr)
    except ProxyConfigError as exc:
        raise ProxyCommandError(str(exc)) from None


def add_commands(sub: Any, request: Callable[[argparse.Namespace, str, str], Any]) -> None:
    areas = sub.add_parser("connect", help="service mesh data plane").add_subparsers(dest="area", metavar="ACTION")
    areas.required = True
    proxy = areas.add_parser("proxy", help="run a Connect sidecar proxy", allow_abbrev=False)
    proxy.add_argument("-sidecar-for", "--sidecar-for", dest="sidecar_for", default="",
                       help="take the configuration from the sidecar registration of this service id")
    proxy.add_argument("-service", "--service", default="", help="the service this proxy acts as")
    proxy.add_argument("-upstream", "--upstream", action="append", help="<service>:<local port>[:<dc>] (repeatable)")
    proxy.add_argument("-listen", "--listen", default="", help="public mTLS listener host:port")
    proxy.add_argument("-service-addr", "--service-addr", dest="service_addr", default="",
                       help="the local application host:port inbound connections go to")
    proxy.add_argument("-http-addr", "--http-addr", dest="http_addrs", action="append",
                       help="a server's HTTP API (repeatable; default 127.0.0.1:8500)")
    proxy.add_argument("-admin-bind", "--admin-bind", dest="admin_bind", default="", help="host:port for /metrics")
    proxy.add_argument("-token", "--token", default="")
    proxy.add_argument("-token-file", "--token-file", dest="token_file", default="")
    proxy.add_argument("-log-level", "--log-level", dest="log_level", default="info")

    def run(ns: argparse.Namespace) -> int:
        from meshfed.server.dataplane.proxy import serve

        http_addrs = tuple(ns.http_addrs or [DEFAULT_HTTP_ADDR])
        ns.http_addr, ns.token = http_addrs[0], _token(ns)
        cfg = _config(ns, lambda path: request(ns, "GET", path))
        try:
            admin = split_address(ns.admin_bind, "-admin-bind") if ns.admin_bind else None
        except ProxyConfigError as exc:
            raise ProxyCommandError(str(exc)) from None
        logging.basicConfig(level=LOG_LEVELS.get(ns.log_level, logging.INFO),
                            format="%(asctime)s [%(levelname)s] %(name)s: %(message)s", stream=sys.stderr)
        return asyncio.run(serve(cfg, http_addrs, ns.token, admin))

    proxy.set_defaults(func=run)

    echo = areas.add_parser("echo", help="a TCP echo service (for trying the mesh)", allow_abbrev=False)
    echo.add_argument("-listen", "--listen", required=True, help="host:port")

    def run_echo(ns: argparse.Namespace) -> int:
        from meshfed.server.dataplane.echo import serve as serve_echo

        try:
            host, port = split_address(ns.listen, "-listen")
        except ProxyConfigError as exc:
            raise ProxyCommandError(str(exc)) from None
        return asyncio.run(serve_echo(host, port))

    echo.set_defaults(func=run_echo)

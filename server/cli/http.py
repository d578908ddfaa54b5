"""How CLI commands reach a server's HTTP API: the address rules, the token, and one error type.

Kept apart from `main.py` so command modules can import it without importing the router that
imports them.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_HTTP_ADDR = "http://127.0.0.1:8500"


class CLIError(Exception):
    """A failed command: main prints `error: <message>` on stderr and exits 1."""


def http_addr(ns: argparse.Namespace) -> str:
    addr = getattr(ns, "http_addr", None) or os.environ.get("MESHFED_HTTP_ADDR") or os.environ.get("CONSUL_HTTP_ADDR")
    addr = addr or DEFAULT_HTTP_ADDR
    return addr if "://" in addr else f"http://{addr}"


def token_of(ns: argparse.Namespace) -> str:
    return getattr(ns, "token", None) or os.environ.get("CONSUL_HTTP_TOKEN") or ""


def open_request(ns: argparse.Namespace, method: str, path: str, body: Any = None, timeout: float | None = 30):  # type: ignore[no-untyped-def]
    """The open response (the caller reads and closes it); HTTP and connection errors are CLIErrors."""
    url = http_addr(ns).rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    token = token_of(ns)
    if token:
        request.add_header("X-Consul-Token", token)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        message = exc.read().decode(errors="replace").strip() or exc.reason
        raise CLIError(f"{method} {path}: HTTP {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise CLIError(f"cannot reach {url}: {exc.reason}") from None


def http_request(ns: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    with open_request(ns, method, path, body) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


def http_request_optional(ns: argparse.Namespace, method: str, path: str) -> Any:
    """Like http_request, but a 404 is None."""
    try:
        return http_request(ns, method, path)
    except CLIError as exc:
        if "HTTP 404" in str(exc):
            return None
        raise


def add_http_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-http-addr", "--http-addr", dest="http_addr", help="HTTP API of a server (host:port or URL)")
    parser.add_argument("-token", "--token", dest="token", help="ACL token")


def table(rows: Sequence[Sequence[Any]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)

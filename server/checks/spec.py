"""What the runner runs for one catalog check: a `CheckSpec` read back from the stored record
(`definition.py` wrote it), or None when the check is not one this agent runs.

Pure. A record that cannot be run (no interval, a malformed duration written through the
catalog API) is skipped, never crashes the runner: the check then stays as it was registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.records import HealthCheck
from meshfed.server.checks.definition import TYPE_ALIAS, TYPE_HTTP, TYPE_TCP

DEFAULT_TIMEOUT = 10.0  # seconds; Consul's default for TCP and HTTP checks
MIN_INTERVAL = 1.0  # seconds; Consul raises shorter intervals to this (checks.MinInterval)
DEFAULT_METHOD = "GET"


@dataclass(frozen=True)
class CheckSpec:
    check_id: str
    kind: str  # TYPE_TCP | TYPE_HTTP | TYPE_ALIAS
    target: str = ""  # host:port (tcp) or URL (http)
    interval: float = 0.0  # seconds; 0 for alias checks (they follow the catalog, not a clock)
    timeout: float = DEFAULT_TIMEOUT
    method: str = DEFAULT_METHOD
    header: tuple[tuple[str, tuple[str, ...]], ...] = ()
    body: str = ""
    tls_skip_verify: bool = False
    tls_server_name: str = ""
    disable_redirects: bool = False
    alias_service: str = ""


def _seconds(*texts: Any) -> float:
    """The first non-empty duration of `texts` in seconds; 0 when none or malformed."""
    for text in texts:
        if isinstance(text, str) and text:
            try:
                return parse_duration(text)
            except ValueError:
                return 0.0
    return 0.0


def spec_of(check: HealthCheck) -> CheckSpec | None:
    definition: Mapping[str, Any] = check.definition or {}
    alias = lookup(definition, "AliasService")
    if isinstance(alias, str) and alias:
        return CheckSpec(check_id=check.check_id, kind=TYPE_ALIAS, alias_service=alias)
    http, tcp = lookup(definition, "HTTP"), lookup(definition, "TCP")
    target = http if isinstance(http, str) and http else tcp if isinstance(tcp, str) and tcp else ""
    interval = _seconds(lookup(definition, "Interval"), check.interval)
    if not target or interval <= 0:
        return None
    timeout = _seconds(lookup(definition, "Timeout"), check.timeout) or DEFAULT_TIMEOUT
    common = {"check_id": check.check_id, "target": target, "interval": max(interval, MIN_INTERVAL),
              "timeout": timeout}
    if target is tcp:
        return CheckSpec(kind=TYPE_TCP, **common)
    header = lookup(definition, "Header")
    method = lookup(definition, "Method")
    body = lookup(definition, "Body")
    return CheckSpec(
        kind=TYPE_HTTP, **common,
        method=method.upper() if isinstance(method, str) and method else DEFAULT_METHOD,
        header=tuple(sorted((str(k), tuple(str(x) for x in v)) for k, v in header.items()
                            if isinstance(v, list))) if isinstance(header, Mapping) else (),
        body=body if isinstance(body, str) else "",
        tls_skip_verify=lookup(definition, "TLSSkipVerify") is True,
        tls_server_name=server_name if isinstance(server_name := lookup(definition, "TLSServerName"), str) else "",
        disable_redirects=lookup(definition, "DisableRedirects") is True,
    )

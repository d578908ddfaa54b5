"""What an agent registration's `Check`/`Checks` become in the catalog when the agent runs them.

Consul's agent keeps a check's TCP/HTTP/alias settings in its local state; meshfed's agent is the
server itself and keeps nothing outside Raft, so the settings travel in the catalog record:
`Type` ("tcp", "http", "alias"), `Interval`, `Timeout`, and `Definition` with Consul's
`HealthCheckDefinition` keys (`TCP`, `HTTP`, `Method`, `Header`, `Body`, `TLSSkipVerify`,
`DisableRedirects`, `Interval`, `Timeout`, `DeregisterCriticalServiceAfter`). Alias checks also
keep `AliasService` (and `AliasNode`) there: Consul's definition has no key for them, and without
them no server could run the check after a restart.

Pure: the registration path (server/http/agent_registration.py) calls it, and the runner reads
the same keys back (`spec.py`). Error texts are Consul's `CheckType.Validate` messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.fsm.consul_formats.field_lookup import lookup

TYPE_TCP, TYPE_HTTP, TYPE_ALIAS = "tcp", "http", "alias"
HTTP_KEYS = ("Method", "Header", "Body", "TLSServerName", "TLSSkipVerify", "DisableRedirects")


class CheckDefinitionError(ValueError):
    """A check definition Consul's agent would refuse; the message names the field."""


def _text(check: Mapping[str, Any], name: str) -> str:
    value = lookup(check, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CheckDefinitionError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _duration(check: Mapping[str, Any], name: str) -> float:
    text = _text(check, name)
    if not text:
        return 0.0
    try:
        return parse_duration(text)
    except ValueError:
        raise CheckDefinitionError(f"{name}: expected a duration such as '10s', got {text!r}") from None


def _header(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v) for k, v in value.items()):
        raise CheckDefinitionError('Header: expected a map of lists of strings, such as {"X-A": ["b"]}')
    return {k: list(v) for k, v in value.items()}


def agent_check_fields(check: Mapping[str, Any], node: str) -> dict[str, Any]:
    """The catalog fields (`Type`, `Interval`, `Timeout`, `Definition`) of an agent check that the
    agent runs; {} for any other check (TTL, or kinds meshfed does not run).

    Raises:
        CheckDefinitionError: naming the field, with Consul's text where Consul has one.
    """
    tcp, http, alias = _text(check, "TCP"), _text(check, "HTTP"), _text(check, "AliasService")
    interval, timeout, ttl = _duration(check, "Interval"), _duration(check, "Timeout"), _duration(check, "TTL")
    if interval > 0 and ttl > 0:
        raise CheckDefinitionError("Interval and TTL cannot both be specified")
    if (tcp or http) and interval <= 0:
        raise CheckDefinitionError("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks")
    if alias and ttl > 0:
        raise CheckDefinitionError("TTL must be not be set for Alias checks")
    if alias and interval > 0:
        raise CheckDefinitionError("Interval cannot be set for Alias checks")
    if ttl > 0 or not (tcp or http or alias):
        return {}
    timing = {key: _text(check, key) for key in ("Interval", "Timeout", "DeregisterCriticalServiceAfter")
              if _text(check, key)}
    _duration(check, "DeregisterCriticalServiceAfter")  # refused here when malformed, not ignored later
    if http:  # Consul's agent tries HTTP before TCP before alias when several are set
        definition: dict[str, Any] = {"HTTP": http, **timing}
        for key in HTTP_KEYS:
            value = lookup(check, key)
            if value is None:
                continue
            if key == "Header":
                value = _header(value)
            elif key in ("TLSSkipVerify", "DisableRedirects") and not isinstance(value, bool):
                raise CheckDefinitionError(f"{key}: expected true or false, got {value!r}")
            elif key not in ("TLSSkipVerify", "DisableRedirects"):
                value = _text(check, key)
            definition[key] = value
        kind = TYPE_HTTP
    elif tcp:
        definition, kind = {"TCP": tcp, **timing}, TYPE_TCP
    else:
        alias_node = _text(check, "AliasNode")
        if alias_node and alias_node.lower() != node.lower():
            raise CheckDefinitionError(f"AliasNode: only services of this agent's node ({node!r}) can be aliased")
        definition, kind = {"AliasService": alias, **({"AliasNode": alias_node} if alias_node else {})}, TYPE_ALIAS
    fields: dict[str, Any] = {"Type": kind, "Definition": definition}
    if interval > 0:
        fields["Interval"] = _text(check, "Interval")
    if timeout > 0:
        fields["Timeout"] = _text(check, "Timeout")
    return fields


def tcp_address(host: str, port: int) -> str:
    """host:port as Go's net.JoinHostPort writes it (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

"""Validation: the values and cross-field rules of one canonical entry, kind by kind.

Normalization has already checked types and key names; this is where "must be one of", ranges and
"cannot be set together" live. Rules that need other entries or the stored state (CAS, legacy-API
mixing, protocol agreement between entries) belong to the store. Only valid entries are proposed
to Raft.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

from meshfed.fsm.config_entries.checks import check_choice, check_exact_or_wildcard, check_meta, check_range
from meshfed.fsm.config_entries.errors import ConfigEntryError, fail, join_path
from meshfed.fsm.config_entries.intention_validation import validate_service_intentions
from meshfed.fsm.config_entries.schema import (
    ACCESS_LOG_TYPES,
    BALANCE_MODES,
    CIPHER_SUITES,
    ESCAPED_SLASHES_ACTIONS,
    EXPORTED_SERVICES_NAME,
    EXPOSE_PROTOCOLS,
    FAILOVER_POLICY_MODES,
    KIND_EXPORTED_SERVICES,
    KIND_MESH,
    KIND_PROXY_DEFAULTS,
    KIND_SERVICE_DEFAULTS,
    KIND_SERVICE_INTENTIONS,
    LOCALITY_MODES,
    MESH_GATEWAY_MODES,
    MESH_NAME,
    MUTUAL_TLS_MODES,
    PORT_MAX,
    PROTOCOLS,
    PROXY_DEFAULTS_NAME,
    PROXY_MODES,
    TLS_VERSIONS,
    TLS_VERSIONS_WITH_CIPHER_SUITES,
    UNDERSCORE_HEADER_ACTIONS,
    WILDCARD,
)
from meshfed.fsm.consul_formats.durations import parse_duration_ns


def validate(entry: Mapping[str, Any], *, legacy_write: bool = False) -> None:
    """Check a canonical entry's values; raises ConfigEntryError naming the first bad field.

    `legacy_write` applies the rules for service-intentions written through the legacy ID API
    (§A.9): every source needs LegacyID and both Legacy times; entry Meta, Peer and
    SamenessGroup are refused. Replicated copies should not be re-validated at all: a primary's
    entry may mix legacy and new-style sources, which neither rule set accepts.
    """
    try:
        kind = entry.get("Kind")
        if kind not in _VALIDATORS:
            raise ConfigEntryError("Kind", f"invalid config entry kind: {kind}")
        if not (legacy_write and kind == KIND_SERVICE_INTENTIONS):
            check_meta(entry.get("Meta") or {}, "Meta")
        _VALIDATORS[kind](entry, legacy_write)
    except (TypeError, AttributeError, KeyError) as exc:
        raise ConfigEntryError("", f"entry is not in canonical form, normalize it first ({exc})") from None


def _check_mesh_gateway(container: Mapping[str, Any], path: str) -> None:
    mode = container.get("MeshGateway", {}).get("Mode", "")
    check_choice(mode, MESH_GATEWAY_MODES, join_path(path, "MeshGateway.Mode"), "mesh gateway mode")


def _check_proxy_common(entry: Mapping[str, Any]) -> None:
    """Fields proxy-defaults and service-defaults share."""
    check_choice(entry.get("Mode", ""), PROXY_MODES, "Mode", "proxy mode")
    check_choice(entry.get("MutualTLSMode", ""), MUTUAL_TLS_MODES, "MutualTLSMode", "mutual TLS mode")
    _check_mesh_gateway(entry, "")
    port = entry.get("TransparentProxy", {}).get("OutboundListenerPort", 0)
    check_range(port, 0, PORT_MAX, "TransparentProxy.OutboundListenerPort")
    for i, path in enumerate(entry.get("Expose", {}).get("Paths", [])):
        prefix = f"Expose.Paths[{i}]"
        check_range(path.get("ListenerPort", 0), 0, PORT_MAX, f"{prefix}.ListenerPort")
        check_range(path.get("LocalPathPort", 0), 0, PORT_MAX, f"{prefix}.LocalPathPort")
        if path.get("Path") and not path["Path"].startswith("/"):
            fail(f"{prefix}.Path", f'must begin with "/", got "{path["Path"]}"')
        check_choice(path.get("Protocol", ""), EXPOSE_PROTOCOLS, f"{prefix}.Protocol", "protocol")
    for i, extension in enumerate(entry.get("EnvoyExtensions", [])):
        if not extension.get("Name"):
            fail(f"EnvoyExtensions[{i}].Name", "Name is required")


def _validate_proxy_defaults(entry: Mapping[str, Any], _legacy: bool) -> None:
    if entry["Name"] != PROXY_DEFAULTS_NAME:
        fail("Name", f'invalid name ("{entry["Name"]}"), only "{PROXY_DEFAULTS_NAME}" is supported')
    for key, value in entry.get("Config", {}).items():
        if key.lower() == "protocol":
            if not isinstance(value, str):
                fail(f"Config.{key}", "must be a string")
            check_choice(value, PROTOCOLS, f"Config.{key}", "protocol")
    _check_proxy_common(entry)
    logs = entry.get("AccessLogs", {})
    check_choice(logs.get("Type", ""), ACCESS_LOG_TYPES, "AccessLogs.Type", "access log type")
    if logs.get("Type") == "file" and not logs.get("Path"):
        fail("AccessLogs.Path", 'is required when Type is "file"')
    if logs.get("Path") and logs.get("Type") != "file":
        fail("AccessLogs.Path", 'can only be set when Type is "file"')
    if logs.get("JSONFormat") and logs.get("TextFormat"):
        fail("AccessLogs", "JSONFormat and TextFormat cannot both be set")
    if logs.get("JSONFormat"):
        _check_json_object(logs["JSONFormat"], "AccessLogs.JSONFormat")
    policy_mode = entry.get("FailoverPolicy", {}).get("Mode", "")
    check_choice(policy_mode, FAILOVER_POLICY_MODES, "FailoverPolicy.Mode", "failover policy mode")
    locality_mode = entry.get("PrioritizeByLocality", {}).get("Mode", "")
    check_choice(locality_mode, LOCALITY_MODES, "PrioritizeByLocality.Mode", "locality mode")


def _check_json_object(text: str, field: str) -> None:
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ConfigEntryError(field, f"must be a JSON object: {exc}") from None
    if not isinstance(parsed, dict):
        fail(field, "must be a JSON object")


def _validate_service_defaults(entry: Mapping[str, Any], _legacy: bool) -> None:
    name = entry["Name"]
    if not name:
        fail("Name", "Name is required")
    if name == WILDCARD:
        fail("Name", "must be the name of a service, not a wildcard")
    # Any protocol string: Consul does not validate service-defaults' Protocol (its API tests
    # write "udp"); only the upstream and proxy-defaults protocols drive meshfed's choices.
    _check_proxy_common(entry)
    for field in ("MaxInboundConnections", "LocalConnectTimeoutMs", "LocalRequestTimeoutMs"):
        check_range(entry.get(field, 0), 0, None, field)
    balance = entry.get("BalanceInboundConnections", "")
    check_choice(balance, BALANCE_MODES, "BalanceInboundConnections", "value")
    if entry.get("RateLimits"):
        fail("RateLimits", "rate limits are a consul enterprise feature")
    upstream_config = entry.get("UpstreamConfig")
    if upstream_config is not None and "Destination" in entry:
        fail("Destination", "cannot be set together with UpstreamConfig")
    if upstream_config:
        _validate_upstream_config(upstream_config)
    if "Destination" in entry:
        _validate_destination(entry["Destination"])


def _validate_upstream_config(config: Mapping[str, Any]) -> None:
    seen: set[tuple[str, str]] = set()
    for i, override in enumerate(config.get("Overrides", [])):
        path = f"UpstreamConfig.Overrides[{i}]"
        name = override.get("Name", "")
        if not name:
            fail(f"{path}.Name", "Name is required")
        if WILDCARD in name:
            fail(f"{path}.Name", "must be the name of a service, not a wildcard")
        key = (name.lower(), override.get("Peer", "").lower())
        if key in seen:
            fail(path, f'defines upstream "{name}" more than once')
        seen.add(key)
        _validate_upstream(override, path)
    defaults = config.get("Defaults")
    if defaults:
        for field in ("Name", "Peer"):
            if defaults.get(field):
                fail(f"UpstreamConfig.Defaults.{field}", "must be empty: Defaults apply to every upstream")
        _validate_upstream(defaults, "UpstreamConfig.Defaults")


def _validate_upstream(upstream: Mapping[str, Any], path: str) -> None:
    check_choice(upstream.get("Protocol", ""), PROTOCOLS, f"{path}.Protocol", "protocol")
    _check_mesh_gateway(upstream, path)
    check_range(upstream.get("ConnectTimeoutMs", 0), 0, None, f"{path}.ConnectTimeoutMs")
    for field, value in upstream.get("Limits", {}).items():
        check_range(value, 0, None, f"{path}.Limits.{field}")
    check = upstream.get("PassiveHealthCheck", {})
    for field in ("MaxFailures", "EnforcingConsecutive5xx", "MaxEjectionPercent"):
        high = 100 if field != "MaxFailures" else None
        check_range(check.get(field, 0), 0, high, f"{path}.PassiveHealthCheck.{field}")
    for field in ("Interval", "BaseEjectionTime"):
        _check_duration(check.get(field, 0), f"{path}.PassiveHealthCheck.{field}")
    balance = upstream.get("BalanceOutboundConnections", "")
    check_choice(balance, BALANCE_MODES, f"{path}.BalanceOutboundConnections", "value")


def _check_duration(value: str | int, field: str) -> None:
    """Durations arrive as Go duration strings ("10s", "1m30s") or integer nanoseconds."""
    if isinstance(value, int):
        check_range(value, 0, None, field)
        return
    if value in ("", "0"):
        return
    try:
        parse_duration_ns(value, allow_plus_sign=False)
    except ValueError:
        fail(field, f'invalid duration "{value}": expected e.g. "10s" or "1m30s"')


_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_ip_or_dns_name(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        pass
    name = address[:-1] if address.endswith(".") else address
    return 0 < len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in name.split("."))


def _validate_destination(destination: Mapping[str, Any]) -> None:
    addresses = destination.get("Addresses", [])
    if not addresses:
        fail("Destination.Addresses", "at least one address is required")
    seen: set[str] = set()
    for i, address in enumerate(addresses):
        if not _is_ip_or_dns_name(address):
            fail(f"Destination.Addresses[{i}]",
                  f'invalid address "{address}": must be an IP address or a DNS name without wildcards')
        if address.lower() in seen:
            fail(f"Destination.Addresses[{i}]", f'duplicate address "{address}"')
        seen.add(address.lower())
    check_range(destination.get("Port", 0), 1, PORT_MAX, "Destination.Port")

def _validate_exported_services(entry: Mapping[str, Any], _legacy: bool) -> None:
    if entry["Name"] != EXPORTED_SERVICES_NAME:
        fail("Name", f'invalid name ("{entry["Name"]}"), only "{EXPORTED_SERVICES_NAME}" is supported')
    for i, service in enumerate(entry.get("Services", [])):
        path = f"Services[{i}]"
        name = service.get("Name", "")
        if not name:
            fail(f"{path}.Name", "service name cannot be empty")
        check_exact_or_wildcard(name, f"{path}.Name")
        namespace = service.get("Namespace", "")
        if namespace not in ("", "default", WILDCARD):
            fail(f"{path}.Namespace",
                  f'invalid namespace "{namespace}": namespaces are a consul enterprise feature')
        if namespace == WILDCARD and name != WILDCARD:
            fail(f"{path}.Name", "exact service name cannot follow a wildcard namespace")
        consumers = service.get("Consumers", [])
        if not consumers:
            fail(f"{path}.Consumers", "at least one consumer is required")
        for j, consumer in enumerate(consumers):
            _validate_consumer(consumer, f"{path}.Consumers[{j}]")


def _validate_consumer(consumer: Mapping[str, Any], path: str) -> None:
    targets = [f for f in ("Peer", "Partition", "SamenessGroup") if consumer.get(f)]
    if len(targets) != 1:
        fail(path, f"must set exactly one of Peer, Partition or SamenessGroup (got {len(targets)})")
    target = targets[0]
    value = consumer[target]
    if target == "SamenessGroup":
        fail(f"{path}.SamenessGroup", "sameness groups are a consul enterprise feature")
    if WILDCARD in value:
        fail(f"{path}.{target}", f"wildcard '*' is not allowed for {target}")
    if target == "Partition" and value.lower() != "default":
        fail(f"{path}.Partition", f'invalid partition "{value}": partitions are a consul enterprise feature')


def _validate_mesh(entry: Mapping[str, Any], _legacy: bool) -> None:
    if entry["Name"] != MESH_NAME:
        fail("Name", f'invalid name ("{entry["Name"]}"), only "{MESH_NAME}" is supported')
    for direction in ("Incoming", "Outgoing"):
        _validate_tls_direction(entry.get("TLS", {}).get(direction, {}), f"TLS.{direction}")
    normalization = entry.get("HTTP", {}).get("Incoming", {}).get("RequestNormalization", {})
    path = "HTTP.Incoming.RequestNormalization"
    check_choice(normalization.get("PathWithEscapedSlashesAction", ""), ESCAPED_SLASHES_ACTIONS,
                  f"{path}.PathWithEscapedSlashesAction", "action")
    check_choice(normalization.get("HeadersWithUnderscoresAction", ""), UNDERSCORE_HEADER_ACTIONS,
                  f"{path}.HeadersWithUnderscoresAction", "action")


_TLS_ORDER = {"TLSv1_0": 0, "TLSv1_1": 1, "TLSv1_2": 2, "TLSv1_3": 3}


def _validate_tls_direction(tls: Mapping[str, Any], path: str) -> None:
    low, high = tls.get("TLSMinVersion", ""), tls.get("TLSMaxVersion", "")
    check_choice(low, TLS_VERSIONS, f"{path}.TLSMinVersion", "TLS version")
    check_choice(high, TLS_VERSIONS, f"{path}.TLSMaxVersion", "TLS version")
    if low in _TLS_ORDER and high in _TLS_ORDER and _TLS_ORDER[high] < _TLS_ORDER[low]:
        fail(f"{path}.TLSMaxVersion", f"{high} must be greater than or equal to TLSMinVersion ({low})")
    suites = tls.get("CipherSuites", [])
    for i, suite in enumerate(suites):
        if suite not in CIPHER_SUITES:
            fail(f"{path}.CipherSuites[{i}]", f'unsupported cipher suite "{suite}"')
    if suites and low not in TLS_VERSIONS_WITH_CIPHER_SUITES:
        fail(f"{path}.CipherSuites",
              f"configuring CipherSuites is only applicable to TLS 1.2 and earlier, TLSMinVersion is {low}")


_VALIDATORS = {
    KIND_PROXY_DEFAULTS: _validate_proxy_defaults,
    KIND_SERVICE_DEFAULTS: _validate_service_defaults,
    KIND_SERVICE_INTENTIONS: validate_service_intentions,
    KIND_EXPORTED_SERVICES: _validate_exported_services,
    KIND_MESH: _validate_mesh,
}

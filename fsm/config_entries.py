"""Config entries: the schema of the five kinds meshfed stores, normalization and validation.

An entry moves through three shapes (reference/connect-data.md §B.1–B.3, §A.9):

  raw        what a user sent: JSON from `PUT /v1/config`, or an HCL/JSON file given to
             `meshfed config write` (`from_hcl`). Keys in any case, snake_case aliases, blocks
             that pyhcl wraps in a one-item list.
  canonical  `normalize(raw)`: a plain dict with Consul's key spelling, zero values dropped and
             kind defaults applied, so that two writes with the same meaning give the same dict,
             the same `content_hash`, and the no-op short-circuit of §B.2 step 5 fires.
  valid      a canonical entry that `validate` accepted; only valid entries are proposed to Raft.

Normalization checks types and key names (the decode step of Consul's HTTP handler); validation
checks values and cross-field rules of one entry. Rules that need other entries or the stored state
(CAS, legacy-API mixing, protocol agreement between entries) belong to the store.

Pure: no I/O, no clock, no threads. The one shared object is a cached pyhcl parser, built lazily
because building it costs ~50 ms, and used under a lock because ply parsers keep per-parse state.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KIND_PROXY_DEFAULTS = "proxy-defaults"
KIND_SERVICE_DEFAULTS = "service-defaults"
KIND_SERVICE_INTENTIONS = "service-intentions"
KIND_EXPORTED_SERVICES = "exported-services"
KIND_MESH = "mesh"
KINDS = (
    KIND_PROXY_DEFAULTS, KIND_SERVICE_DEFAULTS, KIND_SERVICE_INTENTIONS, KIND_EXPORTED_SERVICES, KIND_MESH
)

# Kinds Consul has but meshfed does not store: refused with a clearer message than "invalid".
CONSUL_ONLY_KINDS = (
    "service-router", "service-splitter", "service-resolver", "ingress-gateway", "terminating-gateway",
    "sameness-group", "api-gateway", "bound-api-gateway", "http-route", "tcp-route",
    "file-system-certificate", "inline-certificate", "control-plane-request-limit", "jwt-provider",
)

PROXY_DEFAULTS_NAME = "global"
MESH_NAME = "mesh"
EXPORTED_SERVICES_NAME = "default"
WILDCARD = "*"
DEFAULT_SOURCE_TYPE = "consul"

META_MAX_PAIRS = 64
META_KEY_MAX_LENGTH = 128
META_VALUE_MAX_LENGTH = 512
DESCRIPTION_MAX_LENGTH = 512

PROTOCOLS = ("", "http", "http2", "grpc", "tcp")
PROXY_MODES = ("", "direct", "transparent")
MUTUAL_TLS_MODES = ("", "strict", "permissive")
MESH_GATEWAY_MODES = ("", "none", "local", "remote")
INTENTION_ACTIONS = ("allow", "deny")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
BALANCE_MODES = ("", "exact_balance")
EXPOSE_PROTOCOLS = ("", "http", "http2")
ACCESS_LOG_TYPES = ("", "file", "stderr", "stdout")
FAILOVER_POLICY_MODES = ("", "default", "order-by-locality")
LOCALITY_MODES = ("", "none", "failover")
TLS_VERSIONS = ("", "TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3")
TLS_VERSIONS_WITH_CIPHER_SUITES = ("", "TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2")
CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384", "TLS_RSA_WITH_AES_256_CBC_SHA",
)
ESCAPED_SLASHES_ACTIONS = (
    "", "IMPLEMENTATION_SPECIFIC_DEFAULT", "KEEP_UNCHANGED", "REJECT_REQUEST",
    "UNESCAPE_AND_REDIRECT", "UNESCAPE_AND_FORWARD",
)
UNDERSCORE_HEADER_ACTIONS = ("", "ALLOW", "REJECT_REQUEST", "DROP_HEADER")

# The store owns these; a client echoing them back (e.g. a read-modify-write) is not an error.
_STORE_OWNED_KEYS = ("createindex", "modifyindex", "hash")
_INT64_MIN, _UINT64_LIMIT = -(2**63), 2**64  # what msgpack (Raft commands, snapshots) can carry
_PORT_MAX = 65535


class ConfigEntryError(ValueError):
    """A refused entry. `field` is the path in Consul spelling ("Sources[1].Action", "" for the
    whole payload) so the HTTP layer can answer 400 with something a user can act on."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------
# Schema. Each kind is a tree of fields; normalization walks it, so adding a documented field is
# one line. Field types: str bool int duration str_list str_map free_map object object_list.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str  # canonical (Consul) spelling
    type: str
    schema: Mapping[str, _Field] | None = None  # for object / object_list
    keep_zero: bool = False  # Go pointer fields: present-but-zero means something
    case: str = ""  # "lower" (str) / "upper" (str_list): case-insensitive values, stored in one case


def _fold(key: str) -> str:
    """Key matching rule: case-insensitive, underscores ignored (mesh_gateway == MeshGateway)."""
    return key.replace("_", "").lower()


def _schema(*fields: _Field) -> dict[str, _Field]:
    return {_fold(f.name): f for f in fields}


def _s(name: str, case: str = "") -> _Field:
    return _Field(name, "str", case=case)


def _b(name: str) -> _Field:
    return _Field(name, "bool")


def _i(name: str, keep_zero: bool = False) -> _Field:
    return _Field(name, "int", keep_zero=keep_zero)


def _obj(name: str, schema: Mapping[str, _Field], keep_zero: bool = False) -> _Field:
    return _Field(name, "object", schema, keep_zero=keep_zero)


def _objs(name: str, schema: Mapping[str, _Field]) -> _Field:
    return _Field(name, "object_list", schema)


_MESH_GATEWAY = _schema(_s("Mode"))
_TRANSPARENT_PROXY = _schema(_i("OutboundListenerPort"), _b("DialedDirectly"))
_EXPOSE = _schema(
    _b("Checks"),
    _objs("Paths", _schema(_i("ListenerPort"), _s("Path"), _i("LocalPathPort"), _s("Protocol", "lower"))),
)
_ACCESS_LOGS = _schema(
    _b("Enabled"), _b("DisableListenerLogs"), _s("Type"), _s("Path"), _s("JSONFormat"), _s("TextFormat")
)
_ENVOY_EXTENSION = _schema(
    _s("Name"), _b("Required"), _Field("Arguments", "free_map"), _s("ConsulVersion"), _s("EnvoyVersion")
)
_UPSTREAM = _schema(
    _s("Name"), _s("Peer"), _s("EnvoyListenerJSON"), _s("EnvoyClusterJSON"), _s("Protocol", "lower"),
    _i("ConnectTimeoutMs"),
    _obj("Limits", _schema(
        _i("MaxConnections", True), _i("MaxPendingRequests", True), _i("MaxConcurrentRequests", True)
    )),
    _obj("PassiveHealthCheck", _schema(
        _Field("Interval", "duration"), _i("MaxFailures", True), _i("EnforcingConsecutive5xx", True),
        _i("MaxEjectionPercent", True), _Field("BaseEjectionTime", "duration"),
    )),
    _obj("MeshGateway", _MESH_GATEWAY),
    _s("BalanceOutboundConnections"),
)
_JWT_REQUIREMENT = _schema(
    _objs("Providers", _schema(
        _s("Name"), _objs("VerifyClaims", _schema(_Field("Path", "str_list"), _s("Value")))
    ))
)
_HEADER = _schema(
    _s("Name"), _b("Present"), _s("Exact"), _s("Prefix"), _s("Suffix"), _s("Contains"), _s("Regex"),
    _b("Invert"), _b("IgnoreCase"),
)
_PERMISSION = _schema(
    _s("Action", "lower"),
    _obj("HTTP", _schema(
        _s("PathExact"), _s("PathPrefix"), _s("PathRegex"), _objs("Header", _HEADER),
        _Field("Methods", "str_list", case="upper"),
    ), keep_zero=True),
    _obj("JWT", _JWT_REQUIREMENT),
)
_SOURCE = _schema(
    _s("Name"), _s("Peer"), _s("SamenessGroup"), _s("Action", "lower"), _objs("Permissions", _PERMISSION),
    _i("Precedence"), _s("Type"), _s("Description"), _s("LegacyID"), _Field("LegacyMeta", "str_map"),
    _s("LegacyCreateTime"), _s("LegacyUpdateTime"),
)
_TLS_DIRECTION = _schema(_s("TLSMinVersion"), _s("TLSMaxVersion"), _Field("CipherSuites", "str_list"))

_COMMON = (
    _Field("Kind", "str", keep_zero=True), _Field("Name", "str", keep_zero=True), _Field("Meta", "str_map")
)

_KIND_SCHEMAS: dict[str, dict[str, _Field]] = {
    KIND_PROXY_DEFAULTS: _schema(
        *_COMMON, _Field("Config", "free_map"), _s("Mode"), _obj("TransparentProxy", _TRANSPARENT_PROXY),
        _s("MutualTLSMode"), _obj("MeshGateway", _MESH_GATEWAY), _obj("Expose", _EXPOSE),
        _obj("AccessLogs", _ACCESS_LOGS), _objs("EnvoyExtensions", _ENVOY_EXTENSION),
        _obj("FailoverPolicy", _schema(_s("Mode"), _Field("Regions", "str_list"))),
        _obj("PrioritizeByLocality", _schema(_s("Mode"))),
    ),
    KIND_SERVICE_DEFAULTS: _schema(
        *_COMMON, _s("Protocol", "lower"), _s("Mode"), _obj("TransparentProxy", _TRANSPARENT_PROXY),
        _s("MutualTLSMode"), _obj("MeshGateway", _MESH_GATEWAY), _obj("Expose", _EXPOSE), _s("ExternalSNI"),
        _obj("UpstreamConfig", _schema(_objs("Overrides", _UPSTREAM), _obj("Defaults", _UPSTREAM))),
        _obj("Destination", _schema(_Field("Addresses", "str_list"), _i("Port")), keep_zero=True),
        _i("MaxInboundConnections"), _i("LocalConnectTimeoutMs"), _i("LocalRequestTimeoutMs"),
        _s("BalanceInboundConnections"), _Field("RateLimits", "free_map"),
        _objs("EnvoyExtensions", _ENVOY_EXTENSION),
    ),
    KIND_SERVICE_INTENTIONS: _schema(*_COMMON, _objs("Sources", _SOURCE), _obj("JWT", _JWT_REQUIREMENT)),
    KIND_EXPORTED_SERVICES: _schema(
        *_COMMON,
        _objs("Services", _schema(
            _s("Name"), _s("Namespace"),
            _objs("Consumers", _schema(_s("Peer"), _s("Partition"), _s("SamenessGroup"))),
        )),
    ),
    KIND_MESH: _schema(
        *_COMMON, _obj("TransparentProxy", _schema(_b("MeshDestinationsOnly"))),
        _b("AllowEnablingPermissiveMutualTLS"), _b("ValidateClusters"),
        _obj("TLS", _schema(_obj("Incoming", _TLS_DIRECTION), _obj("Outgoing", _TLS_DIRECTION))),
        _obj("HTTP", _schema(
            _b("SanitizeXForwardedClientCert"),
            _obj("Incoming", _schema(_obj("RequestNormalization", _schema(
                _b("InsecureDisablePathNormalization"), _b("MergeSlashes"),
                _s("PathWithEscapedSlashesAction"), _s("HeadersWithUnderscoresAction"),
            )))),
        )),
        _obj("Peering", _schema(_b("PeerThroughMeshGateways"))),
    ),
}

# --------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------

_ABSENT = object()


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a request body into the canonical entry (see module docstring).

    Raises ConfigEntryError for a missing/unknown Kind, unknown or duplicated keys, and values of
    the wrong type; never anything else, whatever the input.
    """
    try:
        return _normalize(raw)
    except RecursionError:
        raise ConfigEntryError("", "config entry is nested too deeply") from None


def _normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigEntryError("", "config entry must be an object")
    kind = _kind_of(raw)
    entry = _normalize_object(raw, _KIND_SCHEMAS[kind], "", top=True)
    entry["Kind"] = kind
    entry.setdefault("Name", "")
    entry = _in_schema_order(entry, _KIND_SCHEMAS[kind])
    if kind == KIND_PROXY_DEFAULTS:
        entry["Name"] = entry["Name"] or PROXY_DEFAULTS_NAME
        _lower_config_protocol(entry)
    elif kind == KIND_MESH:
        entry["Name"] = entry["Name"] or MESH_NAME
    elif kind == KIND_SERVICE_INTENTIONS:
        _normalize_sources(entry)
    return entry


def _kind_of(raw: Mapping[Any, Any]) -> str:
    kind_keys = [k for k in raw if isinstance(k, str) and _fold(k) == "kind"]
    if not kind_keys:
        raise ConfigEntryError("Kind", "Payload does not contain a kind/Kind key at the top level")
    if len(kind_keys) > 1:
        raise ConfigEntryError("Kind", f"duplicate config key: given as {_quoted(kind_keys)}")
    kind = raw[kind_keys[0]]
    if not isinstance(kind, str):
        raise ConfigEntryError("Kind", "Kind value in payload is not a string")
    folded = kind.lower()
    if folded in KINDS:
        return folded
    if folded in CONSUL_ONLY_KINDS:
        supported = ", ".join(KINDS)
        raise ConfigEntryError("Kind", f"unsupported config entry kind: {kind} (meshfed stores {supported})")
    raise ConfigEntryError("Kind", f"invalid config entry kind: {kind}")


def _normalize_object(raw: Any, schema: Mapping[str, _Field], path: str, top: bool = False) -> dict[str, Any]:
    block = _unwrap_block(raw, path)
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in block.items():
        if not isinstance(key, str):
            raise ConfigEntryError(path, f"invalid config key {key!r}: keys must be strings")
        folded = _fold(key)
        if top and folded in _STORE_OWNED_KEYS:
            continue
        field = schema.get(folded)
        if field is None:
            raise _unknown_key(_join(path, key), key)
        field_path = _join(path, field.name)
        if field.name in given_as:
            spellings = _quoted([given_as[field.name], key])
            raise ConfigEntryError(field_path, f"duplicate config key: given as {spellings}")
        given_as[field.name] = key
        value = _convert(value, field, field_path)
        if value is not _ABSENT:
            out[field.name] = value
    return _in_schema_order(out, schema)


def _in_schema_order(values: dict[str, Any], schema: Mapping[str, _Field]) -> dict[str, Any]:
    """Same key order whatever the input order: readers see entries laid out like Consul's."""
    return {f.name: values[f.name] for f in schema.values() if f.name in values}


def _unknown_key(path: str, key: str) -> ConfigEntryError:
    message = f'invalid config key "{key}"'
    if key.lower().endswith("namespace"):
        message += ", namespaces are a consul enterprise feature"
    elif key.lower().endswith("partition"):
        message += ", partitions are a consul enterprise feature"
    return ConfigEntryError(path, message)


def _unwrap_block(raw: Any, path: str) -> Mapping[Any, Any]:
    """HCL decoders hand a block back as a one-item list of objects; both forms mean the object."""
    if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], Mapping):
        return raw[0]
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, list):
        raise ConfigEntryError(path, f"must be a single object, got a list of {len(raw)} items")
    raise ConfigEntryError(path, f"must be an object, got {_type_name(raw)}")


def _convert(value: Any, field: _Field, path: str) -> Any:
    """Type-check one value; returns _ABSENT for null and (unless keep_zero) for zero values,
    because Go's decoder makes absent and zero indistinguishable and the hash must agree."""
    if value is None:
        return _ABSENT
    kind = field.type
    if kind == "str":
        result: Any = _as_str(value, path)
        result = result.lower() if field.case == "lower" else result
    elif kind == "bool":
        result = _as_bool(value, path)
    elif kind == "int":
        result = _as_int(value, path)
    elif kind == "duration":
        result = value if isinstance(value, str) else _as_int(value, path)
    elif kind == "str_list":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigEntryError(path, f"must be a list of strings, got {_type_name(value)}")
        result = [_as_str(item, f"{path}[{i}]") for i, item in enumerate(items)]
        if field.case == "upper":
            result = [item.upper() for item in result]
    elif kind == "str_map":
        result = {}
        for key, item in _unwrap_block(value, path).items():
            if not isinstance(key, str):
                raise ConfigEntryError(path, f"keys must be strings, got {_type_name(key)}")
            result[_text(key, path)] = _as_map_str(item, f"{path}.{key}")
    elif kind == "free_map":
        result = _free_value(_unwrap_block(value, path), path)
    elif kind == "object":
        result = _normalize_object(value, field.schema or {}, path)
    else:  # object_list
        items = [value] if isinstance(value, Mapping) else value
        if not isinstance(items, list):
            raise ConfigEntryError(path, f"must be a list of objects, got {_type_name(value)}")
        result = [_normalize_object(item, field.schema or {}, f"{path}[{i}]") for i, item in enumerate(items)]
    return _ABSENT if not field.keep_zero and _is_zero(result) else result


def _is_zero(value: Any) -> bool:
    return value in ("", [], {}) or value is False or (type(value) is int and value == 0)


def _as_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigEntryError(path, f"must be a string, got {_type_name(value)}")
    return _text(value, path)


def _text(value: str, path: str) -> str:
    """JSON escapes can smuggle in lone surrogates, which msgpack (Raft commands) cannot encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigEntryError(path, "must be valid unicode text") from None
    return value


def _as_map_str(value: Any, path: str) -> str:
    """Meta values are strings; HCL users write `version = 2`, which Consul's weak decoder accepts."""
    if isinstance(value, str):
        return _text(value, path)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise ConfigEntryError(path, f"must be a string, got {_type_name(value)}")


def _as_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigEntryError(path, f"must be a boolean, got {_type_name(value)}")


def _as_int(value: Any, path: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value.strip()):
        number = int(value)
    if number is None:
        raise ConfigEntryError(path, f"must be an integer, got {_type_name(value)}")
    if not _INT64_MIN <= number < 2**63:
        raise ConfigEntryError(path, f"integer {number} is out of range")
    return number


def _free_value(value: Any, path: str) -> Any:
    """Copy user-owned data (proxy Config, extension Arguments) keeping keys as given, refusing
    only what JSON and msgpack cannot carry faithfully (NaN, huge ints, non-string keys)."""
    if isinstance(value, Mapping):
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigEntryError(path, f"keys must be strings, got {_type_name(key)}")
            copied[_text(key, path)] = _free_value(item, f"{path}.{key}")
        return copied
    if isinstance(value, (list, tuple)):
        return [_free_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigEntryError(path, "must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value < _UINT64_LIMIT:
        raise ConfigEntryError(path, f"integer {value} is out of range")
    if isinstance(value, str):
        return _text(value, path)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise ConfigEntryError(path, f"unsupported value of type {_type_name(value)}")


def _lower_config_protocol(entry: dict[str, Any]) -> None:
    config = entry.get("Config")
    if not config:
        return
    for key, value in config.items():
        if key.lower() == "protocol" and isinstance(value, str):
            config[key] = value.lower()


def _normalize_sources(entry: dict[str, Any]) -> None:
    """Intention sources: Type defaults to consul, Precedence is always recomputed (client
    values are ignored, §A.4), and sources are stable-sorted by precedence, highest first."""
    sources = entry.get("Sources")
    if not sources:
        return
    for i, source in enumerate(sources):
        source["Type"] = source.get("Type") or DEFAULT_SOURCE_TYPE
        source["Precedence"] = precedence(source.get("Name", ""), entry["Name"])
        sources[i] = _in_schema_order(source, _SOURCE)
    sources.sort(key=lambda source: -source["Precedence"])


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


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
            _check_meta(entry.get("Meta") or {}, "Meta")
        _VALIDATORS[kind](entry, legacy_write)
    except (TypeError, AttributeError, KeyError) as exc:
        raise ConfigEntryError("", f"entry is not in canonical form, normalize it first ({exc})") from None


def _fail(field: str, message: str) -> None:
    raise ConfigEntryError(field, message)


def _check_choice(value: Any, allowed: tuple[str, ...], field: str, what: str) -> None:
    if value not in allowed:
        _fail(field, f'invalid {what} "{value}": must be one of {_quoted(allowed)}')


def _check_range(value: int, low: int, high: int | None, field: str) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"greater than or equal to {low}"
        _fail(field, f"must be {bound}, got {value}")


def _check_meta(meta: Mapping[str, str], field: str) -> None:
    if len(meta) > META_MAX_PAIRS:
        _fail(field, f"exceeds maximum element count {META_MAX_PAIRS} (got {len(meta)})")
    for key, value in meta.items():
        if len(key) > META_KEY_MAX_LENGTH:
            _fail(field, f'key "{key[:32]}..." exceeds maximum length {META_KEY_MAX_LENGTH}')
        if len(value) > META_VALUE_MAX_LENGTH:
            _fail(field, f'value for key "{key}" exceeds maximum length {META_VALUE_MAX_LENGTH}')


def _check_exact_or_wildcard(value: str, field: str) -> None:
    if value != WILDCARD and WILDCARD in value:
        _fail(field, "wildcard character '*' cannot be used with partial values")


def _check_mesh_gateway(container: Mapping[str, Any], path: str) -> None:
    mode = container.get("MeshGateway", {}).get("Mode", "")
    _check_choice(mode, MESH_GATEWAY_MODES, _join(path, "MeshGateway.Mode"), "mesh gateway mode")


def _check_proxy_common(entry: Mapping[str, Any]) -> None:
    """Fields proxy-defaults and service-defaults share."""
    _check_choice(entry.get("Mode", ""), PROXY_MODES, "Mode", "proxy mode")
    _check_choice(entry.get("MutualTLSMode", ""), MUTUAL_TLS_MODES, "MutualTLSMode", "mutual TLS mode")
    _check_mesh_gateway(entry, "")
    port = entry.get("TransparentProxy", {}).get("OutboundListenerPort", 0)
    _check_range(port, 0, _PORT_MAX, "TransparentProxy.OutboundListenerPort")
    for i, path in enumerate(entry.get("Expose", {}).get("Paths", [])):
        prefix = f"Expose.Paths[{i}]"
        _check_range(path.get("ListenerPort", 0), 0, _PORT_MAX, f"{prefix}.ListenerPort")
        _check_range(path.get("LocalPathPort", 0), 0, _PORT_MAX, f"{prefix}.LocalPathPort")
        if path.get("Path") and not path["Path"].startswith("/"):
            _fail(f"{prefix}.Path", f'must begin with "/", got "{path["Path"]}"')
        _check_choice(path.get("Protocol", ""), EXPOSE_PROTOCOLS, f"{prefix}.Protocol", "protocol")
    for i, extension in enumerate(entry.get("EnvoyExtensions", [])):
        if not extension.get("Name"):
            _fail(f"EnvoyExtensions[{i}].Name", "Name is required")


def _validate_proxy_defaults(entry: Mapping[str, Any], _legacy: bool) -> None:
    if entry["Name"] != PROXY_DEFAULTS_NAME:
        _fail("Name", f'invalid name ("{entry["Name"]}"), only "{PROXY_DEFAULTS_NAME}" is supported')
    for key, value in entry.get("Config", {}).items():
        if key.lower() == "protocol":
            if not isinstance(value, str):
                _fail(f"Config.{key}", "must be a string")
            _check_choice(value, PROTOCOLS, f"Config.{key}", "protocol")
    _check_proxy_common(entry)
    logs = entry.get("AccessLogs", {})
    _check_choice(logs.get("Type", ""), ACCESS_LOG_TYPES, "AccessLogs.Type", "access log type")
    if logs.get("Type") == "file" and not logs.get("Path"):
        _fail("AccessLogs.Path", 'is required when Type is "file"')
    if logs.get("Path") and logs.get("Type") != "file":
        _fail("AccessLogs.Path", 'can only be set when Type is "file"')
    if logs.get("JSONFormat") and logs.get("TextFormat"):
        _fail("AccessLogs", "JSONFormat and TextFormat cannot both be set")
    if logs.get("JSONFormat"):
        _check_json_object(logs["JSONFormat"], "AccessLogs.JSONFormat")
    policy_mode = entry.get("FailoverPolicy", {}).get("Mode", "")
    _check_choice(policy_mode, FAILOVER_POLICY_MODES, "FailoverPolicy.Mode", "failover policy mode")
    locality_mode = entry.get("PrioritizeByLocality", {}).get("Mode", "")
    _check_choice(locality_mode, LOCALITY_MODES, "PrioritizeByLocality.Mode", "locality mode")


def _check_json_object(text: str, field: str) -> None:
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ConfigEntryError(field, f"must be a JSON object: {exc}") from None
    if not isinstance(parsed, dict):
        _fail(field, "must be a JSON object")


def _validate_service_defaults(entry: Mapping[str, Any], _legacy: bool) -> None:
    name = entry["Name"]
    if not name:
        _fail("Name", "Name is required")
    if name == WILDCARD:
        _fail("Name", "must be the name of a service, not a wildcard")
    _check_choice(entry.get("Protocol", ""), PROTOCOLS, "Protocol", "protocol")
    _check_proxy_common(entry)
    for field in ("MaxInboundConnections", "LocalConnectTimeoutMs", "LocalRequestTimeoutMs"):
        _check_range(entry.get(field, 0), 0, None, field)
    balance = entry.get("BalanceInboundConnections", "")
    _check_choice(balance, BALANCE_MODES, "BalanceInboundConnections", "value")
    if entry.get("RateLimits"):
        _fail("RateLimits", "rate limits are a consul enterprise feature")
    upstream_config = entry.get("UpstreamConfig")
    if upstream_config is not None and "Destination" in entry:
        _fail("Destination", "cannot be set together with UpstreamConfig")
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
            _fail(f"{path}.Name", "Name is required")
        if WILDCARD in name:
            _fail(f"{path}.Name", "must be the name of a service, not a wildcard")
        key = (name.lower(), override.get("Peer", "").lower())
        if key in seen:
            _fail(path, f'defines upstream "{name}" more than once')
        seen.add(key)
        _validate_upstream(override, path)
    defaults = config.get("Defaults")
    if defaults:
        for field in ("Name", "Peer"):
            if defaults.get(field):
                _fail(f"UpstreamConfig.Defaults.{field}", "must be empty: Defaults apply to every upstream")
        _validate_upstream(defaults, "UpstreamConfig.Defaults")


def _validate_upstream(upstream: Mapping[str, Any], path: str) -> None:
    _check_choice(upstream.get("Protocol", ""), PROTOCOLS, f"{path}.Protocol", "protocol")
    _check_mesh_gateway(upstream, path)
    _check_range(upstream.get("ConnectTimeoutMs", 0), 0, None, f"{path}.ConnectTimeoutMs")
    for field, value in upstream.get("Limits", {}).items():
        _check_range(value, 0, None, f"{path}.Limits.{field}")
    check = upstream.get("PassiveHealthCheck", {})
    for field in ("MaxFailures", "EnforcingConsecutive5xx", "MaxEjectionPercent"):
        high = 100 if field != "MaxFailures" else None
        _check_range(check.get(field, 0), 0, high, f"{path}.PassiveHealthCheck.{field}")
    for field in ("Interval", "BaseEjectionTime"):
        _check_duration(check.get(field, 0), f"{path}.PassiveHealthCheck.{field}")
    balance = upstream.get("BalanceOutboundConnections", "")
    _check_choice(balance, BALANCE_MODES, f"{path}.BalanceOutboundConnections", "value")


_GO_DURATION = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")


def _check_duration(value: str | int, field: str) -> None:
    """Durations arrive as Go duration strings ("10s", "1m30s") or integer nanoseconds."""
    if isinstance(value, int):
        _check_range(value, 0, None, field)
    elif value not in ("", "0") and not re.fullmatch(f"(?:{_GO_DURATION.pattern})+", value):
        _fail(field, f'invalid duration "{value}": expected e.g. "10s" or "1m30s"')


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
        _fail("Destination.Addresses", "at least one address is required")
    seen: set[str] = set()
    for i, address in enumerate(addresses):
        if not _is_ip_or_dns_name(address):
            _fail(f"Destination.Addresses[{i}]",
                  f'invalid address "{address}": must be an IP address or a DNS name without wildcards')
        if address.lower() in seen:
            _fail(f"Destination.Addresses[{i}]", f'duplicate address "{address}"')
        seen.add(address.lower())
    _check_range(destination.get("Port", 0), 1, _PORT_MAX, "Destination.Port")


def _validate_service_intentions(entry: Mapping[str, Any], legacy: bool) -> None:
    name = entry["Name"]
    if not name:
        _fail("Name", "Name is required")
    _check_exact_or_wildcard(name, "Name")
    if "JWT" in entry:
        _check_jwt(entry["JWT"], "JWT")
    if legacy and entry.get("Meta"):
        _fail("Meta", "must be omitted for legacy intention writes")
    sources = entry.get("Sources", [])
    if not sources:
        _fail("Sources", "At least one source is required")
    seen: set[tuple[str, str, str]] = set()
    for i, source in enumerate(sources):
        _validate_source(source, f"Sources[{i}]", name == WILDCARD, legacy)
        key = (source["Name"], source.get("Peer", ""), source.get("SamenessGroup", ""))
        if key in seen:
            label = f'peer("{key[1]}") "{key[0]}"' if key[1] else f'"{key[0]}"'
            _fail(f"Sources[{i}]", f"defines {label} more than once")
        seen.add(key)


def _validate_source(source: Mapping[str, Any], path: str, wildcard_destination: bool, legacy: bool) -> None:
    if not source.get("Name"):
        _fail(f"{path}.Name", "Name is required")
    _check_exact_or_wildcard(source["Name"], f"{path}.Name")
    if WILDCARD in source.get("Peer", ""):
        _fail(f"{path}.Peer", "cannot use wildcard '*' in peer")
    if source.get("SamenessGroup"):
        if source.get("Peer"):
            _fail(f"{path}.SamenessGroup", "cannot set SamenessGroup and Peer at the same time")
        _fail(f"{path}.SamenessGroup", "sameness groups are a consul enterprise feature")
    if len(source.get("Description", "")) > DESCRIPTION_MAX_LENGTH:
        _fail(f"{path}.Description", f"exceeds maximum length {DESCRIPTION_MAX_LENGTH}")
    _check_legacy_fields(source, path, legacy)
    permissions = source.get("Permissions", [])
    action = source.get("Action", "")
    if (legacy or not permissions) and action not in INTENTION_ACTIONS:
        _fail(f"{path}.Action", "must be set to 'allow' or 'deny'")
    if permissions and action:
        _fail(f"{path}.Action", "must be omitted if Permissions are specified")
    if permissions and wildcard_destination:
        _fail(f"{path}.Permissions", "cannot be specified on intentions with wildcarded destinations")
    if source.get("Type") != DEFAULT_SOURCE_TYPE:
        _fail(f"{path}.Type", f"must be set to '{DEFAULT_SOURCE_TYPE}'")
    for j, permission in enumerate(permissions):
        _validate_permission(permission, f"{path}.Permissions[{j}]")


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _check_legacy_fields(source: Mapping[str, Any], path: str, legacy: bool) -> None:
    if not legacy:
        for field in ("LegacyID", "LegacyMeta", "LegacyCreateTime", "LegacyUpdateTime"):
            if field in source:
                _fail(f"{path}.{field}", "must be omitted")
        return
    if source.get("Peer"):
        _fail(f"{path}.Peer", "cannot be set by legacy intentions")
    if source.get("Permissions"):
        _fail(f"{path}.Permissions", "must not be set when using the legacy APIs")
    if not source.get("LegacyID"):
        _fail(f"{path}.LegacyID", "must be set")
    _check_meta(source.get("LegacyMeta", {}), f"{path}.LegacyMeta")
    for field in ("LegacyCreateTime", "LegacyUpdateTime"):
        stamp = source.get(field, "")
        if not stamp:
            _fail(f"{path}.{field}", "must be set")
        if not _RFC3339.fullmatch(stamp):
            _fail(f"{path}.{field}", f'invalid timestamp "{stamp}": expected RFC 3339')


def _validate_permission(permission: Mapping[str, Any], path: str) -> None:
    if permission.get("Action", "") not in INTENTION_ACTIONS:
        _fail(f"{path}.Action", "must be set to 'allow' or 'deny'")
    if "JWT" in permission:
        _check_jwt(permission["JWT"], f"{path}.JWT")
    if "HTTP" not in permission:
        _fail(f"{path}.HTTP", "HTTP is required")
    http = permission["HTTP"]
    path = f"{path}.HTTP"
    path_fields = [f for f in ("PathExact", "PathPrefix", "PathRegex") if http.get(f)]
    if len(path_fields) > 1:
        _fail(path, "should only contain at most one of PathExact, PathPrefix, or PathRegex")
    for field in ("PathExact", "PathPrefix"):
        if http.get(field) and not http[field].startswith("/"):
            _fail(f"{path}.{field}", f"doesn't start with '/': \"{http[field]}\"")
    headers = http.get("Header", [])
    for k, header in enumerate(headers):
        _check_header(header, f"{path}.Header[{k}]")
    methods = http.get("Methods", [])
    for method in methods:
        if method not in HTTP_METHODS:
            _fail(f"{path}.Methods", f'contains an invalid method "{method}"')
    duplicates = sorted({m for m in methods if methods.count(m) > 1})
    if duplicates:
        _fail(f"{path}.Methods", f'contains "{duplicates[0]}" more than once')
    if not (path_fields or headers or methods):
        _fail(path, "should not be empty")


_HEADER_MATCHERS = ("Present", "Exact", "Prefix", "Suffix", "Contains", "Regex")


def _check_header(header: Mapping[str, Any], path: str) -> None:
    if not header.get("Name"):
        _fail(f"{path}.Name", "Name is required")
    matchers = [m for m in _HEADER_MATCHERS if header.get(m)]
    if len(matchers) != 1:
        _fail(path, f"should contain exactly one of {', '.join(_HEADER_MATCHERS)}")
    if header.get("IgnoreCase") and matchers[0] in ("Present", "Regex"):
        _fail(f"{path}.IgnoreCase", f"cannot be used with {matchers[0]}")


def _check_jwt(requirement: Mapping[str, Any], path: str) -> None:
    for i, provider in enumerate(requirement.get("Providers", [])):
        if not provider.get("Name"):
            _fail(f"{path}.Providers[{i}].Name", "Name is required")
        for j, claim in enumerate(provider.get("VerifyClaims", [])):
            if not claim.get("Path"):
                _fail(f"{path}.Providers[{i}].VerifyClaims[{j}].Path", "Path is required")


def _validate_exported_services(entry: Mapping[str, Any], _legacy: bool) -> None:
    if entry["Name"] != EXPORTED_SERVICES_NAME:
        _fail("Name", f'invalid name ("{entry["Name"]}"), only "{EXPORTED_SERVICES_NAME}" is supported')
    for i, service in enumerate(entry.get("Services", [])):
        path = f"Services[{i}]"
        name = service.get("Name", "")
        if not name:
            _fail(f"{path}.Name", "service name cannot be empty")
        _check_exact_or_wildcard(name, f"{path}.Name")
        namespace = service.get("Namespace", "")
        if namespace not in ("", "default", WILDCARD):
            _fail(f"{path}.Namespace",
                  f'invalid namespace "{namespace}": namespaces are a consul enterprise feature')
        if namespace == WILDCARD and name != WILDCARD:
            _fail(f"{path}.Name", "exact service name cannot follow a wildcard namespace")
        consumers = service.get("Consumers", [])
        if not consumers:
            _fail(f"{path}.Consumers", "at least one consumer is required")
        for j, consumer in enumerate(consumers):
            _validate_consumer(consumer, f"{path}.Consumers[{j}]")


def _validate_consumer(consumer: Mapping[str, Any], path: str) -> None:
    targets = [f for f in ("Peer", "Partition", "SamenessGroup") if consumer.get(f)]
    if len(targets) != 1:
        _fail(path, f"must set exactly one of Peer, Partition or SamenessGroup (got {len(targets)})")
    target = targets[0]
    value = consumer[target]
    if target == "SamenessGroup":
        _fail(f"{path}.SamenessGroup", "sameness groups are a consul enterprise feature")
    if WILDCARD in value:
        _fail(f"{path}.{target}", f"wildcard '*' is not allowed for {target}")
    if target == "Partition" and value.lower() != "default":
        _fail(f"{path}.Partition", f'invalid partition "{value}": partitions are a consul enterprise feature')


def _validate_mesh(entry: Mapping[str, Any], _legacy: bool) -> None:
    if entry["Name"] != MESH_NAME:
        _fail("Name", f'invalid name ("{entry["Name"]}"), only "{MESH_NAME}" is supported')
    for direction in ("Incoming", "Outgoing"):
        _validate_tls_direction(entry.get("TLS", {}).get(direction, {}), f"TLS.{direction}")
    normalization = entry.get("HTTP", {}).get("Incoming", {}).get("RequestNormalization", {})
    path = "HTTP.Incoming.RequestNormalization"
    _check_choice(normalization.get("PathWithEscapedSlashesAction", ""), ESCAPED_SLASHES_ACTIONS,
                  f"{path}.PathWithEscapedSlashesAction", "action")
    _check_choice(normalization.get("HeadersWithUnderscoresAction", ""), UNDERSCORE_HEADER_ACTIONS,
                  f"{path}.HeadersWithUnderscoresAction", "action")


_TLS_ORDER = {"TLSv1_0": 0, "TLSv1_1": 1, "TLSv1_2": 2, "TLSv1_3": 3}


def _validate_tls_direction(tls: Mapping[str, Any], path: str) -> None:
    low, high = tls.get("TLSMinVersion", ""), tls.get("TLSMaxVersion", "")
    _check_choice(low, TLS_VERSIONS, f"{path}.TLSMinVersion", "TLS version")
    _check_choice(high, TLS_VERSIONS, f"{path}.TLSMaxVersion", "TLS version")
    if low in _TLS_ORDER and high in _TLS_ORDER and _TLS_ORDER[high] < _TLS_ORDER[low]:
        _fail(f"{path}.TLSMaxVersion", f"{high} must be greater than or equal to TLSMinVersion ({low})")
    suites = tls.get("CipherSuites", [])
    for i, suite in enumerate(suites):
        if suite not in CIPHER_SUITES:
            _fail(f"{path}.CipherSuites[{i}]", f'unsupported cipher suite "{suite}"')
    if suites and low not in TLS_VERSIONS_WITH_CIPHER_SUITES:
        _fail(f"{path}.CipherSuites",
              f"configuring CipherSuites is only applicable to TLS 1.2 and earlier, TLSMinVersion is {low}")


_VALIDATORS = {
    KIND_PROXY_DEFAULTS: _validate_proxy_defaults,
    KIND_SERVICE_DEFAULTS: _validate_service_defaults,
    KIND_SERVICE_INTENTIONS: _validate_service_intentions,
    KIND_EXPORTED_SERVICES: _validate_exported_services,
    KIND_MESH: _validate_mesh,
}

# --------------------------------------------------------------------------------------------
# Identity: keys, precedence, content hash
# --------------------------------------------------------------------------------------------


def entry_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, lower-cased name): lookups are case-insensitive, so Web and web are one entry."""
    kind = str(entry.get("Kind", "")).lower()
    name = str(entry.get("Name") or "")
    if not name:
        name = {KIND_PROXY_DEFAULTS: PROXY_DEFAULTS_NAME, KIND_MESH: MESH_NAME}.get(kind, "")
    return kind, name.lower()


def precedence(source_name: str, destination_name: str) -> int:
    """Intention precedence in CE, where both namespaces are always "default" (§A.4):
    exact->exact 9, *->exact 8, exact->* 6, *->* 5."""
    highest = 6 if destination_name == WILDCARD else 9
    return highest - (1 if source_name == WILDCARD else 0)


def _content_bytes(entry: Mapping[str, Any]) -> bytes:
    content = {k: v for k, v in entry.items() if k not in ("CreateIndex", "ModifyIndex", "Hash")}
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def content_hash(entry: Mapping[str, Any]) -> int:
    """Unsigned 64-bit digest of the content, raft indexes and Hash excluded, stable across
    processes and versions of Python (replication compares it with the primary's). Never 0:
    replication treats a zero hash as "unknown, rewrite" (§B.5)."""
    digest = hashlib.blake2b(_content_bytes(entry), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def is_same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal content ignoring raft indexes and Hash. Compared as serialized text, not with ==,
    so that `true` and `1` (or 1 and 1.0) inside a free-form Config count as a change."""
    return _content_bytes(a) == _content_bytes(b)


# --------------------------------------------------------------------------------------------
# Files: HCL or JSON, as `consul config write` takes them
# --------------------------------------------------------------------------------------------

_parser_lock = threading.Lock()
_parser: Any = None


def from_hcl(text: str | bytes) -> dict[str, Any]:
    """Parse a config-entry file (HCL or JSON) into a raw dict for `normalize`.

    Repeated blocks (`Sources { ... }` twice) become a list of objects, as in Consul's HCL
    decoder; stock pyhcl merges them and silently loses keys, so a stricter parser is used.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigEntryError("", f"config entry file is not UTF-8: {exc}") from None
    try:
        if text.lstrip().startswith("{"):
            parsed = json.loads(text)
        else:
            with _parser_lock:
                parsed = _hcl_parser().parse(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigEntryError("", f"failed to parse JSON: {exc.msg} at {where}") from None
    except ConfigEntryError:
        raise
    except Exception as exc:  # pyhcl raises assorted exception types on bad input
        raise ConfigEntryError("", f"failed to parse HCL: {_hcl_error_position(str(exc), text)}") from None
    if not isinstance(parsed, dict):
        raise ConfigEntryError("", "config entry file must contain one object")
    return parsed


def _hcl_error_position(message: str, text: str) -> str:
    """pyhcl's grammar errors report the offset in the file as the "column", and end-of-file
    errors carry no position at all; make both point at a line and column a user can find."""
    grammar_error = re.match(r"Line (\d+), column (\d+): (.*)", message, re.DOTALL)
    if grammar_error:
        line, offset, rest = int(grammar_error[1]), int(grammar_error[2]), grammar_error[3]
        column = offset - text.rfind("\n", 0, offset)
        return f"line {line}, column {column}: {rest}"
    if message.startswith("Unexpected end of file"):
        return f"line {text.count(chr(10)) + 1}: {message}"
    return message


def _hcl_parser() -> Any:
    global _parser
    if _parser is None:
        from hcl.parser import HclParser

        class _RepeatedBlocksParser(HclParser):  # type: ignore[misc]
            def objectlist_flat(self, items: list[tuple[Any, Any]], replace: bool) -> dict[str, Any]:
                return _collect_items(items)

        _parser = _RepeatedBlocksParser()
    return _parser


def _collect_items(items: list[tuple[Any, Any]]) -> dict[str, Any]:
    """One HCL object body: a key given once keeps its value; a key repeated as blocks becomes
    the list of those blocks; any other repetition is a mistake we refuse rather than guess."""
    grouped: dict[str, list[Any]] = {}
    for key, value in items:
        if not isinstance(key, str):
            raise ConfigEntryError("", f"unsupported HCL key {key!r}")
        grouped.setdefault(key, []).append(value)
    out: dict[str, Any] = {}
    for key, values in grouped.items():
        if len(values) == 1:
            out[key] = values[0]
        elif all(isinstance(v, dict) for v in values):
            out[key] = values
        else:
            raise ConfigEntryError("", f'duplicate config key "{key}"')
    return out


# --------------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _quoted(values: Any) -> str:
    return ", ".join(f'"{v}"' for v in values)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )

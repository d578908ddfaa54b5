"""The schema of the five config-entry kinds meshfed stores, and the value sets they accept.

Each kind is a tree of `Field`s that normalization walks, so documenting a new Consul field is
one line here. Kinds Consul has but meshfed does not store are listed so that they are refused
with a clearer message than "invalid".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshfed.fsm.consul_formats.meta import (  # noqa: F401  (re-exported: part of the entry schema)
    META_KEY_MAX_LENGTH,
    META_MAX_PAIRS,
    META_VALUE_MAX_LENGTH,
)

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
PORT_MAX = 65535

# --------------------------------------------------------------------------------------------
# Schema. Each kind is a tree of fields; normalization walks it, so adding a documented field is
# one line. Field types: str bool int duration str_list str_map free_map object object_list.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One key of an entry: how to read its value and what it is called in Consul's spelling."""

    name: str  # canonical (Consul) spelling
    type: str
    schema: Mapping[str, Field] | None = None  # for object / object_list
    keep_zero: bool = False  # Go pointer fields: present-but-zero means something
    case: str = ""  # "lower" (str) / "upper" (str_list): case-insensitive values, stored in one case


def fold_key(key: str) -> str:
    """Key matching rule: case-insensitive, underscores ignored (mesh_gateway == MeshGateway)."""
    return key.replace("_", "").lower()


def _schema(*fields: Field) -> dict[str, Field]:
    return {fold_key(f.name): f for f in fields}


def _s(name: str, case: str = "") -> Field:
    return Field(name, "str", case=case)


def _b(name: str) -> Field:
    return Field(name, "bool")


def _i(name: str, keep_zero: bool = False) -> Field:
    return Field(name, "int", keep_zero=keep_zero)


def _obj(name: str, schema: Mapping[str, Field], keep_zero: bool = False) -> Field:
    return Field(name, "object", schema, keep_zero=keep_zero)


def _objs(name: str, schema: Mapping[str, Field]) -> Field:
    return Field(name, "object_list", schema)


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
    _s("Name"), _b("Required"), Field("Arguments", "free_map"), _s("ConsulVersion"), _s("EnvoyVersion")
)
_UPSTREAM = _schema(
    _s("Name"), _s("Peer"), _s("EnvoyListenerJSON"), _s("EnvoyClusterJSON"), _s("Protocol", "lower"),
    _i("ConnectTimeoutMs"),
    _obj("Limits", _schema(
        _i("MaxConnections", True), _i("MaxPendingRequests", True), _i("MaxConcurrentRequests", True)
    )),
    _obj("PassiveHealthCheck", _schema(
        Field("Interval", "duration"), _i("MaxFailures", True), _i("EnforcingConsecutive5xx", True),
        _i("MaxEjectionPercent", True), Field("BaseEjectionTime", "duration"),
    )),
    _obj("MeshGateway", _MESH_GATEWAY),
    _s("BalanceOutboundConnections"),
)
_JWT_REQUIREMENT = _schema(
    _objs("Providers", _schema(
        _s("Name"), _objs("VerifyClaims", _schema(Field("Path", "str_list"), _s("Value")))
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
        Field("Methods", "str_list", case="upper"),
    ), keep_zero=True),
    _obj("JWT", _JWT_REQUIREMENT),
)
SOURCE_SCHEMA = _schema(
    _s("Name"), _s("Peer"), _s("SamenessGroup"), _s("Action", "lower"), _objs("Permissions", _PERMISSION),
    _i("Precedence"), _s("Type"), _s("Description"), _s("LegacyID"), Field("LegacyMeta", "str_map"),
    _s("LegacyCreateTime"), _s("LegacyUpdateTime"),
)
_TLS_DIRECTION = _schema(_s("TLSMinVersion"), _s("TLSMaxVersion"), Field("CipherSuites", "str_list"))

_COMMON = (
    Field("Kind", "str", keep_zero=True), Field("Name", "str", keep_zero=True), Field("Meta", "str_map")
)

KIND_SCHEMAS: dict[str, dict[str, Field]] = {
    KIND_PROXY_DEFAULTS: _schema(
        *_COMMON, Field("Config", "free_map"), _s("Mode"), _obj("TransparentProxy", _TRANSPARENT_PROXY),
        _s("MutualTLSMode"), _obj("MeshGateway", _MESH_GATEWAY), _obj("Expose", _EXPOSE),
        _obj("AccessLogs", _ACCESS_LOGS), _objs("EnvoyExtensions", _ENVOY_EXTENSION),
        _obj("FailoverPolicy", _schema(_s("Mode"), Field("Regions", "str_list"))),
        _obj("PrioritizeByLocality", _schema(_s("Mode"))),
    ),
    KIND_SERVICE_DEFAULTS: _schema(
        *_COMMON, _s("Protocol", "lower"), _s("Mode"), _obj("TransparentProxy", _TRANSPARENT_PROXY),
        _s("MutualTLSMode"), _obj("MeshGateway", _MESH_GATEWAY), _obj("Expose", _EXPOSE), _s("ExternalSNI"),
        _obj("UpstreamConfig", _schema(_objs("Overrides", _UPSTREAM), _obj("Defaults", _UPSTREAM))),
        _obj("Destination", _schema(Field("Addresses", "str_list"), _i("Port")), keep_zero=True),
        _i("MaxInboundConnections"), _i("LocalConnectTimeoutMs"), _i("LocalRequestTimeoutMs"),
        _s("BalanceInboundConnections"), Field("RateLimits", "free_map"),
        _objs("EnvoyExtensions", _ENVOY_EXTENSION),
    ),
    KIND_SERVICE_INTENTIONS: _schema(*_COMMON, _objs("Sources", SOURCE_SCHEMA), _obj("JWT", _JWT_REQUIREMENT)),
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

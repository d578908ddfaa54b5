"""Config entry normalization and validation (fsm/config_entries/).

Rules pinned here come from reference/connect-data.md §B.1–B.3 (kinds, decode, HTTP errors) and
§A.3–A.4, §A.9 (intention wildcards, precedence, service-intentions entries), with meshfed's
contract from notes/i4_common.md: canonical CamelCase dicts, every error names its field.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfed.fsm.config_entries import (
    CIPHER_SUITES,
    KINDS,
    ConfigEntryError,
    content_hash,
    entry_key,
    is_same_content,
    normalize,
    precedence,
    validate,
)
from meshfed.fsm.records import ConfigEntry
from meshfed.server.config.hcl import from_hcl

REPO_ROOT = Path(__file__).resolve().parents[2]


def check(raw: dict[str, Any]) -> dict[str, Any]:
    entry = normalize(raw)
    validate(entry)
    return entry


def refused(raw: Any) -> ConfigEntryError:
    with pytest.raises(ConfigEntryError) as info:
        check(raw)
    return info.value


# --------------------------------------------------------------------------------------------
# The error type
# --------------------------------------------------------------------------------------------


def test_error_is_a_value_error_carrying_field_and_message() -> None:
    error = ConfigEntryError("Sources[1].Action", "must be set to 'allow' or 'deny'")
    assert isinstance(error, ValueError)
    assert (error.field, error.message) == ("Sources[1].Action", "must be set to 'allow' or 'deny'")
    assert str(error) == "Sources[1].Action: must be set to 'allow' or 'deny'"
    assert str(ConfigEntryError("", "whole payload")) == "whole payload"


# --------------------------------------------------------------------------------------------
# Kind (§B.3: the decode errors of PUT /v1/config)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"Name": "web"}, "Payload does not contain a kind/Kind key at the top level"),
        ({"Kind": 7, "Name": "web"}, "Kind value in payload is not a string"),
        ({"Kind": None}, "Kind value in payload is not a string"),
        ({"Kind": "nope"}, "invalid config entry kind: nope"),
        ({"Kind": "service-router", "Name": "web"}, "unsupported config entry kind: service-router"),
        ({"Kind": "mesh", "kind": "mesh"}, 'duplicate config key: given as "Kind", "kind"'),
    ],
)
def test_kind_errors(raw: dict[str, Any], message: str) -> None:
    error = refused(raw)
    assert error.field == "Kind"
    assert error.message.startswith(message)


def test_payload_must_be_an_object() -> None:
    assert refused(["Kind", "mesh"]).message == "config entry must be an object"


@pytest.mark.parametrize("spelling", ["kind", "Kind", "KIND"])
def test_kind_key_and_value_are_case_insensitive(spelling: str) -> None:
    assert check({spelling: "Service-Defaults", "Name": "web"})["Kind"] == "service-defaults"


# --------------------------------------------------------------------------------------------
# Normalization: canonical output
# --------------------------------------------------------------------------------------------

NORMALIZED = [
    pytest.param(
        {"Kind": "service-defaults", "Name": "web", "Protocol": "HTTP", "MeshGateway": {"Mode": "local"},
         "CreateIndex": 15, "ModifyIndex": 35, "Hash": 4711},
        {"Kind": "service-defaults", "Name": "web", "Protocol": "http", "MeshGateway": {"Mode": "local"}},
        id="store-owned keys dropped, protocol lower-cased",
    ),
    pytest.param(
        {"Kind": "proxy-defaults", "Config": {"protocol": "HTTP", "Envoy_Thing": {"Deep": [1, True]}}},
        {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http", "Envoy_Thing": {"Deep": [1, True]}}},
        id="proxy-defaults name defaults to global; Config keys kept as given",
    ),
    pytest.param(
        {"Kind": "mesh", "TransparentProxy": {"MeshDestinationsOnly": True}},
        {"Kind": "mesh", "Name": "mesh", "TransparentProxy": {"MeshDestinationsOnly": True}},
        id="mesh name is mesh",
    ),
    pytest.param(
        {"Kind": "service-defaults", "Name": "web", "Protocol": "", "MeshGateway": {"Mode": ""}, "Meta": {},
         "MaxInboundConnections": 0, "TransparentProxy": {"DialedDirectly": False}, "ExternalSNI": None},
        {"Kind": "service-defaults", "Name": "web"},
        id="zero values and nulls are the same as absent",
    ),
    pytest.param(
        {"Kind": "service-defaults", "Name": "web", "Destination": {"Addresses": "api.example.com", "Port": "443"},
         "MaxInboundConnections": 10.0, "TransparentProxy": {"DialedDirectly": "TRUE"}},
        {"Kind": "service-defaults", "Name": "web", "TransparentProxy": {"DialedDirectly": True},
         "Destination": {"Addresses": ["api.example.com"], "Port": 443}, "MaxInboundConnections": 10},
        id="weak typing: scalar to list, numeric strings, integral floats, boolean strings",
    ),
    pytest.param(
        {"Kind": "service-defaults", "Name": "web", "MeshGateway": [{"Mode": "remote"}],
         "UpstreamConfig": {"Overrides": {"Name": "api", "Protocol": "GRPC"}}},
        {"Kind": "service-defaults", "Name": "web", "MeshGateway": {"Mode": "remote"},
         "UpstreamConfig": {"Overrides": [{"Name": "api", "Protocol": "grpc"}]}},
        id="pyhcl shapes: block as one-item list, single block for a list",
    ),
    pytest.param(
        {"Kind": "service-defaults", "Name": "web", "Meta": {"version": 2, "ratio": 0.5}},
        {"Kind": "service-defaults", "Name": "web", "Meta": {"version": "2", "ratio": "0.5"}},
        id="numeric meta values become strings",
    ),
    pytest.param(
        {"Kind": "service-defaults", "Name": "web",
         "UpstreamConfig": {"Defaults": {"Limits": {"MaxConnections": 0}}}},
        {"Kind": "service-defaults", "Name": "web",
         "UpstreamConfig": {"Defaults": {"Limits": {"MaxConnections": 0}}}},
        id="pointer-valued limits keep an explicit zero",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZED)
def test_normalize(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    entry = check(raw)
    assert entry == expected
    assert list(entry)[:2] == ["Kind", "Name"]


def test_key_order_follows_the_schema_not_the_input() -> None:
    """Readers (and diffs of `config read` output) see one layout whatever order a client used."""
    forward = {"Kind": "service-defaults", "Name": "web", "Protocol": "http", "MeshGateway": {"Mode": "local"},
               "UpstreamConfig": {"Overrides": [{"Name": "api", "Protocol": "grpc", "ConnectTimeoutMs": 5}]}}
    backward = {"UpstreamConfig": {"Overrides": [{"ConnectTimeoutMs": 5, "Protocol": "grpc", "Name": "api"}]},
                "MeshGateway": {"Mode": "local"}, "Protocol": "http", "Name": "web", "Kind": "service-defaults"}
    a, b = check(forward), check(backward)
    assert json.dumps(a) == json.dumps(b)
    assert list(a) == ["Kind", "Name", "Protocol", "MeshGateway", "UpstreamConfig"]
    assert list(a["UpstreamConfig"]["Overrides"][0]) == ["Name", "Protocol", "ConnectTimeoutMs"]


def test_normalize_does_not_mutate_its_input() -> None:
    raw = {"kind": "service-intentions", "name": "db", "sources": [{"name": "*", "action": "allow"},
                                                                   {"name": "web", "action": "deny"}]}
    before = copy.deepcopy(raw)
    normalize(raw)
    assert raw == before


@pytest.mark.parametrize(
    "raw",
    [
        {"kind": "service-defaults", "name": "web", "protocol": "http", "mesh_gateway": {"mode": "local"},
         "transparent_proxy": {"outbound_listener_port": 15001, "dialed_directly": True},
         "mutual_tls_mode": "strict", "balance_inbound_connections": "exact_balance",
         "upstream_config": {"overrides": [{"name": "api", "connect_timeout_ms": 5000,
                                            "passive_health_check": {"enforcing_consecutive_5xx": 50}}]}},
        {"KIND": "service-defaults", "NAME": "web", "PROTOCOL": "http", "MESHGATEWAY": {"MODE": "local"},
         "TRANSPARENTPROXY": {"OUTBOUNDLISTENERPORT": 15001, "DIALEDDIRECTLY": True},
         "MutualTlsMode": "strict", "BalanceInboundConnections": "exact_balance",
         "UpstreamConfig": {"Overrides": [{"Name": "api", "ConnectTimeoutMs": 5000,
                                           "PassiveHealthCheck": {"EnforcingConsecutive5xx": 50}}]}},
    ],
    ids=["snake_case", "mixed case"],
)
def test_keys_match_case_insensitively_and_as_snake_case(raw: dict[str, Any]) -> None:
    assert check(raw) == _EXPECTED_SPELLING


_EXPECTED_SPELLING = {
    "Kind": "service-defaults", "Name": "web", "Protocol": "http",
    "TransparentProxy": {"OutboundListenerPort": 15001, "DialedDirectly": True}, "MutualTLSMode": "strict",
    "MeshGateway": {"Mode": "local"},
    "UpstreamConfig": {"Overrides": [
        {"Name": "api", "ConnectTimeoutMs": 5000, "PassiveHealthCheck": {"EnforcingConsecutive5xx": 50}}]},
    "BalanceInboundConnections": "exact_balance",
}


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"Kind": "service-defaults", "Name": "web", "Foo": 1}, "Foo", 'invalid config key "Foo"'),
        ({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {"Overrides": [{"Name": "a"}, {"Nmae": "b"}]}},
         "UpstreamConfig.Overrides[1].Nmae", 'invalid config key "Nmae"'),
        ({"Kind": "service-defaults", "Name": "web", "Namespace": "team"},
         "Namespace", 'invalid config key "Namespace", namespaces are a consul enterprise feature'),
        ({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "SourceNamespace": "x"}]},
         "Sources[0].SourceNamespace", "namespaces are a consul enterprise feature"),
        ({"Kind": "service-defaults", "Name": "web", "partition": "p"},
         "partition", "partitions are a consul enterprise feature"),
        ({"Kind": "service-defaults", "Name": "web", "Protocol": "http", "protocol": "tcp"},
         "Protocol", 'duplicate config key: given as "Protocol", "protocol"'),
        ({"Kind": "service-defaults", "Name": 5}, "Name", "must be a string, got number"),
        ({"Kind": "service-defaults", "Name": "web", "MaxInboundConnections": "lots"},
         "MaxInboundConnections", "must be an integer"),
        ({"Kind": "service-defaults", "Name": "web", "MaxInboundConnections": True},
         "MaxInboundConnections", "must be an integer"),
        ({"Kind": "service-defaults", "Name": "web", "MaxInboundConnections": 2**70},
         "MaxInboundConnections", "out of range"),
        ({"Kind": "mesh", "ValidateClusters": "yes"}, "ValidateClusters", "must be a boolean"),
        ({"Kind": "service-defaults", "Name": "web", "MeshGateway": "local"}, "MeshGateway", "must be an object"),
        ({"Kind": "service-defaults", "Name": "web", "MeshGateway": [{"Mode": "local"}, {"Mode": "remote"}]},
         "MeshGateway", "must be a single object, got a list of 2 items"),
        ({"Kind": "service-intentions", "Name": "db", "Sources": ["web"]}, "Sources[0]", "must be an object"),
        ({"Kind": "service-defaults", "Name": "web", "Meta": {"a": ["b"]}}, "Meta.a", "must be a string"),
        ({"Kind": "proxy-defaults", "Config": {"x": float("nan")}}, "Config.x", "must be a finite number"),
        ({"Kind": "proxy-defaults", "Config": {"x": [2**65]}}, "Config.x[0]", "out of range"),
        ({"Kind": "service-defaults", "Name": "\ud800"}, "Name", "must be valid unicode text"),
    ],
)
def test_decode_errors_name_the_key(raw: dict[str, Any], field: str, message: str) -> None:
    error = refused(raw)
    assert error.field == field
    assert message in error.message


# --------------------------------------------------------------------------------------------
# Validation tables, per kind
# --------------------------------------------------------------------------------------------

VALID = [
    {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http", "local_connect_timeout_ms": 1000},
     "Mode": "transparent", "MutualTLSMode": "permissive", "MeshGateway": {"Mode": "remote"},
     "Expose": {"Checks": True, "Paths": [{"ListenerPort": 21500, "Path": "/metrics", "LocalPathPort": 9102,
                                             "Protocol": "http"}]},
     "AccessLogs": {"Enabled": True, "Type": "file", "Path": "/var/log/envoy.log", "JSONFormat": '{"a": "%START_TIME%"}'},
     "EnvoyExtensions": [{"Name": "builtin/lua", "Arguments": {"Script": "x"}}],
     "PrioritizeByLocality": {"Mode": "failover"}, "Meta": {"owner": "platform"}},
    {"Kind": "proxy-defaults", "Name": "", "MeshGateway": {"Mode": "none"}},
    {"Kind": "service-defaults", "Name": "web", "Protocol": "grpc", "MeshGateway": {"Mode": "local"},
     "UpstreamConfig": {"Overrides": [{"Name": "api", "Protocol": "http2", "MeshGateway": {"Mode": "remote"}},
                                      {"Name": "api", "Peer": "cluster-02"}],
                        "Defaults": {"ConnectTimeoutMs": 3000, "Limits": {"MaxConnections": 100},
                                     "PassiveHealthCheck": {"Interval": "10s", "MaxFailures": 5,
                                                            "BaseEjectionTime": "1m30s"}}},
     "MaxInboundConnections": 512, "LocalRequestTimeoutMs": 2000},
    # Consul validates no service-defaults protocol (its API tests write "udp").
    {"Kind": "service-defaults", "Name": "dns", "Protocol": "udp"},
    {"Kind": "service-defaults", "Name": "ext", "Protocol": "tcp",
     "Destination": {"Addresses": ["api.example.com", "10.0.0.1", "2001:db8::1"], "Port": 443}},
    {"Kind": "service-intentions", "Name": "db", "Meta": {"owner": "team-db"}, "Sources": [
        {"Name": "web", "Action": "deny"}, {"Name": "api", "Peer": "cluster-02", "Action": "allow"},
        {"Name": "*", "Action": "allow", "Description": "catch-all"},
        {"Name": "admin", "Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/admin", "Methods": ["get", "POST"],
                                          "Header": [{"Name": "X-Team", "Exact": "ops", "IgnoreCase": True}]}},
            {"Action": "deny", "HTTP": {"PathRegex": ".*"}}]}]},
    {"Kind": "service-intentions", "Name": "*", "Sources": [{"Name": "*", "Action": "deny"}]},
    {"Kind": "exported-services", "Name": "default", "Services": [
        {"Name": "api", "Consumers": [{"Peer": "cluster-02"}, {"Partition": "default"}]},
        {"Name": "*", "Namespace": "*", "Consumers": [{"Peer": "cluster-03"}]}]},
    {"Kind": "mesh", "TransparentProxy": {"MeshDestinationsOnly": True}, "AllowEnablingPermissiveMutualTLS": True,
     "ValidateClusters": True, "TLS": {"Incoming": {"TLSMinVersion": "TLSv1_2", "TLSMaxVersion": "TLSv1_3",
                                                    "CipherSuites": list(CIPHER_SUITES[:2])},
                                       "Outgoing": {"TLSMinVersion": "TLSv1_3"}},
     "HTTP": {"SanitizeXForwardedClientCert": True,
              "Incoming": {"RequestNormalization": {"MergeSlashes": True,
                                                    "HeadersWithUnderscoresAction": "DROP_HEADER"}}},
     "Peering": {"PeerThroughMeshGateways": True}},
    {"Kind": "mesh", "Name": "mesh"},
]


@pytest.mark.parametrize("raw", VALID, ids=lambda raw: raw["Kind"])
def test_valid_entries_pass_and_are_fixed_points(raw: dict[str, Any]) -> None:
    entry = check(raw)
    assert normalize(entry) == entry
    assert normalize(json.loads(json.dumps(entry))) == entry


def sd(**fields: Any) -> dict[str, Any]:
    return {"Kind": "service-defaults", "Name": "web", **fields}


def pd(**fields: Any) -> dict[str, Any]:
    return {"Kind": "proxy-defaults", "Name": "global", **fields}


def si(*sources: dict[str, Any], name: str = "db", **fields: Any) -> dict[str, Any]:
    return {"Kind": "service-intentions", "Name": name, "Sources": list(sources), **fields}


def es(*services: dict[str, Any], name: str = "default") -> dict[str, Any]:
    return {"Kind": "exported-services", "Name": name, "Services": list(services)}


def mesh(**fields: Any) -> dict[str, Any]:
    return {"Kind": "mesh", **fields}


def perm(**http: Any) -> dict[str, Any]:
    return {"Action": "allow", "HTTP": http}


ALLOW_WEB = {"Name": "web", "Action": "allow"}

INVALID = [
    # every kind: Meta limits
    (sd(Meta={f"k{i}": "v" for i in range(65)}), "Meta", "exceeds maximum element count 64"),
    (sd(Meta={"k" * 129: "v"}), "Meta", "exceeds maximum length 128"),
    (mesh(Meta={"k": "v" * 513}), "Meta", 'value for key "k" exceeds maximum length 512'),
    # proxy-defaults
    (pd(Name="web"), "Name", 'invalid name ("web"), only "global" is supported'),
    (pd(Mode="sidecar"), "Mode", 'invalid proxy mode "sidecar": must be one of "", "direct", "transparent"'),
    (pd(MutualTLSMode="loose"), "MutualTLSMode", "invalid mutual TLS mode"),
    (pd(MeshGateway={"Mode": "upstream"}), "MeshGateway.Mode", 'invalid mesh gateway mode "upstream"'),
    (pd(Config={"Protocol": "udp"}), "Config.Protocol", 'invalid protocol "udp"'),
    (pd(Config={"protocol": 5}), "Config.protocol", "must be a string"),
    (pd(TransparentProxy={"OutboundListenerPort": 70000}), "TransparentProxy.OutboundListenerPort",
     "must be between 0 and 65535"),
    (pd(Expose={"Paths": [{"Path": "metrics"}]}), "Expose.Paths[0].Path", 'must begin with "/"'),
    (pd(Expose={"Paths": [{"Protocol": "grpc"}]}), "Expose.Paths[0].Protocol", "invalid protocol"),
    (pd(AccessLogs={"Type": "file"}), "AccessLogs.Path", 'is required when Type is "file"'),
    (pd(AccessLogs={"Type": "stdout", "Path": "/x"}), "AccessLogs.Path", "can only be set when"),
    (pd(AccessLogs={"JSONFormat": "{}", "TextFormat": "x"}), "AccessLogs", "cannot both be set"),
    (pd(AccessLogs={"JSONFormat": "[1]"}), "AccessLogs.JSONFormat", "must be a JSON object"),
    (pd(EnvoyExtensions=[{"Required": True}]), "EnvoyExtensions[0].Name", "Name is required"),
    (pd(FailoverPolicy={"Mode": "random"}), "FailoverPolicy.Mode", "invalid failover policy mode"),
    # service-defaults
    (sd(Name=""), "Name", "Name is required"),
    (sd(Name="*"), "Name", "not a wildcard"),
    (sd(MeshGateway={"Mode": "nearest"}), "MeshGateway.Mode", 'must be one of "", "none", "local", "remote"'),
    (sd(MaxInboundConnections=-1), "MaxInboundConnections", "must be greater than or equal to 0"),
    (sd(LocalConnectTimeoutMs=-5), "LocalConnectTimeoutMs", "must be greater than or equal to 0"),
    (sd(BalanceInboundConnections="round_robin"), "BalanceInboundConnections", 'invalid value "round_robin"'),
    (sd(RateLimits={"InstanceLevel": {"RequestsPerSecond": 5}}), "RateLimits", "consul enterprise feature"),
    (sd(UpstreamConfig={"Overrides": [{"Protocol": "http"}]}), "UpstreamConfig.Overrides[0].Name",
     "Name is required"),
    (sd(UpstreamConfig={"Overrides": [{"Name": "*"}]}), "UpstreamConfig.Overrides[0].Name", "not a wildcard"),
    (sd(UpstreamConfig={"Overrides": [{"Name": "api"}, {"Name": "API"}]}), "UpstreamConfig.Overrides[1]",
     'defines upstream "API" more than once'),
    (sd(UpstreamConfig={"Overrides": [{"Name": "api", "MeshGateway": {"Mode": "x"}}]}),
     "UpstreamConfig.Overrides[0].MeshGateway.Mode", "invalid mesh gateway mode"),
    (sd(UpstreamConfig={"Overrides": [{"Name": "api", "Protocol": "udp"}]}),
     "UpstreamConfig.Overrides[0].Protocol", 'invalid protocol "udp"'),
    (sd(UpstreamConfig={"Defaults": {"Name": "api"}}), "UpstreamConfig.Defaults.Name", "must be empty"),
    (sd(UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"MaxEjectionPercent": 101}}}),
     "UpstreamConfig.Defaults.PassiveHealthCheck.MaxEjectionPercent", "must be between 0 and 100"),
    (sd(UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"Interval": "ten seconds"}}}),
     "UpstreamConfig.Defaults.PassiveHealthCheck.Interval", 'invalid duration "ten seconds"'),
    (sd(UpstreamConfig={"Defaults": {"Limits": {"MaxPendingRequests": -1}}}),
     "UpstreamConfig.Defaults.Limits.MaxPendingRequests", "greater than or equal to 0"),
    (sd(UpstreamConfig={"Defaults": {"ConnectTimeoutMs": 1}}, Destination={"Addresses": ["a.com"], "Port": 443}),
     "Destination", "cannot be set together with UpstreamConfig"),
    (sd(Destination={}), "Destination.Addresses", "at least one address is required"),
    (sd(Destination={"Addresses": ["*.example.com"], "Port": 443}), "Destination.Addresses[0]",
     "must be an IP address or a DNS name without wildcards"),
    (sd(Destination={"Addresses": ["a.com", "A.com"], "Port": 443}), "Destination.Addresses[1]",
     'duplicate address "A.com"'),
    (sd(Destination={"Addresses": ["a.com"]}), "Destination.Port", "must be between 1 and 65535, got 0"),
    (sd(Destination={"Addresses": ["a.com"], "Port": 65536}), "Destination.Port", "must be between 1 and 65535"),
    # service-intentions
    (si(ALLOW_WEB, name=""), "Name", "Name is required"),
    (si(ALLOW_WEB, name="d*"), "Name", "wildcard character '*' cannot be used with partial values"),
    (si(), "Sources", "At least one source is required"),
    (si({"Action": "allow"}), "Sources[0].Name", "Name is required"),
    (si({"Name": "we*", "Action": "allow"}), "Sources[0].Name", "cannot be used with partial values"),
    (si({"Name": "web", "Peer": "p*", "Action": "allow"}), "Sources[0].Peer", "cannot use wildcard"),
    (si({"Name": "web", "SamenessGroup": "g", "Action": "allow"}), "Sources[0].SamenessGroup",
     "sameness groups are a consul enterprise feature"),
    (si({"Name": "web", "SamenessGroup": "g", "Peer": "p", "Action": "allow"}), "Sources[0].SamenessGroup",
     "cannot set SamenessGroup and Peer at the same time"),
    (si({"Name": "web", "Action": "allow", "Description": "d" * 513}), "Sources[0].Description",
     "exceeds maximum length 512"),
    (si({"Name": "web", "Action": "maybe"}), "Sources[0].Action", "must be set to 'allow' or 'deny'"),
    (si({"Name": "web"}), "Sources[0].Action", "must be set to 'allow' or 'deny'"),
    (si({"Name": "web", "Action": "allow", "Permissions": [perm(PathExact="/")]}), "Sources[0].Action",
     "must be omitted if Permissions are specified"),
    (si({"Name": "web", "Permissions": [perm(PathExact="/")]}, name="*"), "Sources[0].Permissions",
     "cannot be specified on intentions with wildcarded destinations"),
    (si({"Name": "web", "Action": "allow", "Type": "external"}), "Sources[0].Type", "must be set to 'consul'"),
    (si({"Name": "web", "Action": "allow", "LegacyID": "e9ebc19f"}), "Sources[0].LegacyID", "must be omitted"),
    (si({"Name": "web", "Action": "allow", "LegacyMeta": {"a": "b"}}), "Sources[0].LegacyMeta", "must be omitted"),
    (si(ALLOW_WEB, {"Name": "api", "Action": "deny"}, {"Name": "web", "Action": "deny"}), "Sources[2]",
     'defines "web" more than once'),
    (si({"Name": "web", "Peer": "p1", "Action": "deny"}, {"Name": "web", "Peer": "p1", "Action": "allow"}),
     "Sources[1]", 'defines peer("p1") "web" more than once'),
    (si({"Name": "web", "Permissions": [{"Action": "permit", "HTTP": {"PathExact": "/"}}]}),
     "Sources[0].Permissions[0].Action", "must be set to 'allow' or 'deny'"),
    (si({"Name": "web", "Permissions": [{"Action": "allow"}]}), "Sources[0].Permissions[0].HTTP",
     "HTTP is required"),
    (si({"Name": "web", "Permissions": [perm()]}), "Sources[0].Permissions[0].HTTP", "should not be empty"),
    (si({"Name": "web", "Permissions": [perm(PathExact="/a", PathPrefix="/b")]}),
     "Sources[0].Permissions[0].HTTP", "at most one of PathExact, PathPrefix, or PathRegex"),
    (si({"Name": "web", "Permissions": [perm(PathPrefix="api")]}), "Sources[0].Permissions[0].HTTP.PathPrefix",
     "doesn't start with '/'"),
    (si({"Name": "web", "Permissions": [perm(Header=[{"Exact": "x"}])]}),
     "Sources[0].Permissions[0].HTTP.Header[0].Name", "Name is required"),
    (si({"Name": "web", "Permissions": [perm(Header=[{"Name": "X", "Exact": "x", "Prefix": "y"}])]}),
     "Sources[0].Permissions[0].HTTP.Header[0]", "should contain exactly one of"),
    (si({"Name": "web", "Permissions": [perm(Header=[{"Name": "X"}])]}),
     "Sources[0].Permissions[0].HTTP.Header[0]", "should contain exactly one of"),
    (si({"Name": "web", "Permissions": [perm(Header=[{"Name": "X", "Regex": ".*", "IgnoreCase": True}])]}),
     "Sources[0].Permissions[0].HTTP.Header[0].IgnoreCase", "cannot be used with Regex"),
    (si({"Name": "web", "Permissions": [perm(Methods=["GET", "FETCH"])]}),
     "Sources[0].Permissions[0].HTTP.Methods", 'contains an invalid method "FETCH"'),
    (si({"Name": "web", "Permissions": [perm(Methods=["get", "GET"])]}),
     "Sources[0].Permissions[0].HTTP.Methods", 'contains "GET" more than once'),
    (si(ALLOW_WEB, JWT={"Providers": [{"VerifyClaims": [{"Path": ["sub"]}]}]}), "JWT.Providers[0].Name",
     "Name is required"),
    (si(ALLOW_WEB, Meta={f"k{i}": "v" for i in range(65)}), "Meta", "exceeds maximum element count"),
    # exported-services
    (es({"Name": "api", "Consumers": [{"Peer": "p"}]}, name="other"), "Name",
     'invalid name ("other"), only "default" is supported'),
    (es({"Consumers": [{"Peer": "p"}]}), "Services[0].Name", "service name cannot be empty"),
    (es({"Name": "a*", "Consumers": [{"Peer": "p"}]}), "Services[0].Name", "cannot be used with partial values"),
    (es({"Name": "api", "Namespace": "team", "Consumers": [{"Peer": "p"}]}), "Services[0].Namespace",
     "namespaces are a consul enterprise feature"),
    (es({"Name": "api", "Namespace": "*", "Consumers": [{"Peer": "p"}]}), "Services[0].Name",
     "exact service name cannot follow a wildcard namespace"),
    (es({"Name": "api"}), "Services[0].Consumers", "at least one consumer is required"),
    (es({"Name": "api", "Consumers": [{}]}), "Services[0].Consumers[0]", "must set exactly one of"),
    (es({"Name": "api", "Consumers": [{"Peer": "p", "Partition": "default"}]}), "Services[0].Consumers[0]",
     "must set exactly one of Peer, Partition or SamenessGroup"),
    (es({"Name": "api", "Consumers": [{"Peer": "*"}]}), "Services[0].Consumers[0].Peer", "wildcard '*'"),
    (es({"Name": "api", "Consumers": [{"Partition": "*"}]}), "Services[0].Consumers[0].Partition",
     "wildcard '*'"),
    (es({"Name": "api", "Consumers": [{"Partition": "east"}]}), "Services[0].Consumers[0].Partition",
     "partitions are a consul enterprise feature"),
    (es({"Name": "api", "Consumers": [{"SamenessGroup": "g"}]}), "Services[0].Consumers[0].SamenessGroup",
     "sameness groups are a consul enterprise feature"),
    # mesh
    (mesh(Name="other"), "Name", 'invalid name ("other"), only "mesh" is supported'),
    (mesh(TLS={"Incoming": {"TLSMinVersion": "TLSv1_4"}}), "TLS.Incoming.TLSMinVersion",
     'invalid TLS version "TLSv1_4"'),
    (mesh(TLS={"Outgoing": {"TLSMaxVersion": "tls12"}}), "TLS.Outgoing.TLSMaxVersion", "invalid TLS version"),
    (mesh(TLS={"Incoming": {"TLSMinVersion": "TLSv1_3", "TLSMaxVersion": "TLSv1_2"}}),
     "TLS.Incoming.TLSMaxVersion", "must be greater than or equal to TLSMinVersion (TLSv1_3)"),
    (mesh(TLS={"Incoming": {"CipherSuites": ["TLS_FAKE"]}}), "TLS.Incoming.CipherSuites[0]",
     'unsupported cipher suite "TLS_FAKE"'),
    (mesh(TLS={"Outgoing": {"TLSMinVersion": "TLSv1_3", "CipherSuites": [CIPHER_SUITES[0]]}}),
     "TLS.Outgoing.CipherSuites", "only applicable to TLS 1.2 and earlier"),
    (mesh(HTTP={"Incoming": {"RequestNormalization": {"PathWithEscapedSlashesAction": "IGNORE"}}}),
     "HTTP.Incoming.RequestNormalization.PathWithEscapedSlashesAction", 'invalid action "IGNORE"'),
]


@pytest.mark.parametrize(("raw", "field", "message"), INVALID, ids=lambda v: v if isinstance(v, str) else "")
def test_invalid_entries_name_field_and_reason(raw: dict[str, Any], field: str, message: str) -> None:
    error = refused(raw)
    assert (error.field, message in error.message) == (field, True), str(error)


def test_each_invalid_case_differs_from_a_valid_entry_only_in_what_it_tests() -> None:
    """Guards the table above: the builders themselves produce valid entries."""
    for raw in (sd(), pd(), si(ALLOW_WEB), es({"Name": "api", "Consumers": [{"Peer": "p"}]}), mesh()):
        check(raw)


# --------------------------------------------------------------------------------------------
# Intentions: precedence, ordering, defaults (§A.4, §A.9)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "destination", "expected"),
    [("web", "db", 9), ("*", "db", 8), ("web", "*", 6), ("*", "*", 5)],
)
def test_precedence_table(source: str, destination: str, expected: int) -> None:
    assert precedence(source, destination) == expected


def test_sources_get_type_and_recomputed_precedence_and_are_stable_sorted() -> None:
    entry = check(si(
        {"Name": "*", "Action": "allow", "Precedence": 100},
        {"Name": "web", "Action": "deny", "Type": "consul"},
        {"Name": "api", "Peer": "p", "Action": "allow", "Precedence": 1},
        {"name": "ops", "permissions": [{"action": "allow", "http": {"methods": ["delete", "get"]}}]},
    ))
    assert [(s["Name"], s["Precedence"], s["Type"]) for s in entry["Sources"]] == [
        ("web", 9, "consul"), ("api", 9, "consul"), ("ops", 9, "consul"), ("*", 8, "consul")]
    assert entry["Sources"][2]["Permissions"][0]["HTTP"]["Methods"] == ["DELETE", "GET"]


def test_wildcard_destination_lowers_every_source_precedence() -> None:
    entry = check(si({"Name": "*", "Action": "deny"}, {"Name": "web", "Action": "allow"}, name="*"))
    assert [(s["Name"], s["Precedence"]) for s in entry["Sources"]] == [("web", 6), ("*", 5)]


def test_legacy_write_rules() -> None:
    legacy_source = {"Name": "web", "Action": "allow", "LegacyID": "e9ebc19f-d481-42b1-4871-4d298d3acd5c",
                     "LegacyMeta": {"team": "payments"}, "LegacyCreateTime": "2024-05-21T16:41:27.977155457Z",
                     "LegacyUpdateTime": "2024-05-21T16:41:27.977157724Z"}
    validate(normalize(si(legacy_source)), legacy_write=True)
    with pytest.raises(ConfigEntryError) as info:
        validate(normalize(si(legacy_source)))
    assert info.value.field == "Sources[0].LegacyID"
    cases = [
        (si({**legacy_source, "LegacyID": ""}), "Sources[0].LegacyID", "must be set"),
        (si({k: v for k, v in legacy_source.items() if k != "LegacyUpdateTime"}),
         "Sources[0].LegacyUpdateTime", "must be set"),
        (si({**legacy_source, "LegacyCreateTime": "yesterday"}), "Sources[0].LegacyCreateTime", "RFC 3339"),
        (si({**legacy_source, "Peer": "p"}), "Sources[0].Peer", "cannot be set by legacy intentions"),
        (si(legacy_source, Meta={"a": "b"}), "Meta", "must be omitted for legacy intention writes"),
        (si({**legacy_source, "Action": "", "Permissions": [perm(PathExact="/")]}), "Sources[0].Permissions",
         "must not be set when using the legacy APIs"),
    ]
    for raw, field, message in cases:
        with pytest.raises(ConfigEntryError) as info:
            validate(normalize(raw), legacy_write=True)
        assert info.value.field == field and message in info.value.message, str(info.value)


# --------------------------------------------------------------------------------------------
# Identity: key, hash, same-content
# --------------------------------------------------------------------------------------------


def test_entry_key_is_kind_and_lower_cased_name() -> None:
    assert entry_key(check(sd(Name="Web"))) == ("service-defaults", "web")
    assert entry_key(check(mesh())) == ("mesh", "mesh")
    assert entry_key({"Kind": "proxy-defaults"}) == ("proxy-defaults", "global")


def test_content_hash_ignores_key_order_spelling_and_store_fields() -> None:
    a = check({"Kind": "service-defaults", "Name": "web", "Protocol": "http", "Meta": {"a": "1", "b": "2"}})
    b = check({"meta": {"b": "2", "a": "1"}, "protocol": "HTTP", "name": "web", "kind": "service-defaults"})
    assert a == b and content_hash(a) == content_hash(b)
    stored = {**a, "CreateIndex": 3, "ModifyIndex": 9, "Hash": content_hash(a)}
    assert content_hash(stored) == content_hash(a)
    assert is_same_content(stored, b)
    assert 0 < content_hash(a) < 2**64


@pytest.mark.parametrize(
    "change",
    [
        {"Protocol": "grpc"},
        {"Name": "Web"},
        {"Meta": {"a": "1", "b": "3"}},
        {"MeshGateway": {"Mode": "local"}},
    ],
)
def test_any_content_change_changes_hash_and_sameness(change: dict[str, Any]) -> None:
    a = check(sd(Protocol="http", Meta={"a": "1", "b": "2"}))
    b = check({**a, **change})
    assert content_hash(a) != content_hash(b)
    assert not is_same_content(a, b)


def test_is_same_content_distinguishes_true_from_one_in_free_form_config() -> None:
    a, b = check(pd(Config={"x": True})), check(pd(Config={"x": 1}))
    assert a == b  # Python equality cannot tell them apart...
    assert not is_same_content(a, b)  # ...but a user changed the value.
    assert content_hash(a) != content_hash(b)


def test_content_hash_is_stable_across_processes() -> None:
    entry = check(si({"Name": "web", "Action": "allow"}, {"Name": "*", "Action": "deny"}, Meta={"é": "ü"}))
    script = (
        "import json, sys\n"
        "from meshfed.fsm.config_entries import content_hash\n"
        "print(content_hash(json.loads(sys.stdin.read())))\n"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)}
        out = subprocess.run([sys.executable, "-c", script], input=json.dumps(entry), env=env,
                             capture_output=True, text=True, check=True, timeout=30)
        assert int(out.stdout) == content_hash(entry)


# --------------------------------------------------------------------------------------------
# Files written like Consul users write them
# --------------------------------------------------------------------------------------------

HCL_FILES = [
    (
        'Kind = "proxy-defaults"\nName = "global"\nMeshGateway { Mode = "local" }\n',
        {"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}},
    ),
    (
        """
        # the seed walkthrough's defaults
        Kind = "proxy-defaults"
        Name = "global"
        Config {
          protocol = "http"
          "envoy_prometheus_bind_addr" = "0.0.0.0:9102"
        }
        MeshGateway {
          Mode = "remote"
        }
        """,
        {"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "remote"},
         "Config": {"protocol": "http", "envoy_prometheus_bind_addr": "0.0.0.0:9102"}},
    ),
    (
        """
        Kind = "service-intentions"
        Name = "db"
        Sources = [
          {
            Name   = "web"
            Action = "deny"
          },
          {
            Name        = "*"
            Action      = "allow"
            Description = "catch-all"
          },
        ]
        """,
        {"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "web", "Action": "deny", "Precedence": 9, "Type": "consul"},
            {"Name": "*", "Action": "allow", "Precedence": 8, "Type": "consul", "Description": "catch-all"}]},
    ),
    (
        """
        Kind = "service-intentions"
        Name = "api"
        Sources {
          Name = "web"
          Permissions {
            Action = "allow"
            HTTP {
              PathPrefix = "/v1"
              Methods    = ["GET", "HEAD"]
            }
          }
          Permissions {
            Action = "deny"
            HTTP { PathExact = "/admin" }
          }
        }
        Sources {
          Name   = "ops"
          Action = "allow"
        }
        """,
        {"Kind": "service-intentions", "Name": "api", "Sources": [
            {"Name": "web", "Precedence": 9, "Type": "consul", "Permissions": [
                {"Action": "allow", "HTTP": {"PathPrefix": "/v1", "Methods": ["GET", "HEAD"]}},
                {"Action": "deny", "HTTP": {"PathExact": "/admin"}}]},
            {"Name": "ops", "Action": "allow", "Precedence": 9, "Type": "consul"}]},
    ),
    (
        'kind = "service-defaults"\nname = "web"\nprotocol = "http"\nmesh_gateway { mode = "local" }\n'
        'upstream_config {\n  overrides = [{ name = "api", mesh_gateway = { mode = "remote" } }]\n}\n',
        {"Kind": "service-defaults", "Name": "web", "Protocol": "http", "MeshGateway": {"Mode": "local"},
         "UpstreamConfig": {"Overrides": [{"Name": "api", "MeshGateway": {"Mode": "remote"}}]}},
    ),
    (
        'Kind = "exported-services"\nName = "default"\nServices = [\n  {\n    Name = "api"\n'
        '    Consumers = [ { Peer = "cluster-02" } ]\n  }\n]\n',
        {"Kind": "exported-services", "Name": "default",
         "Services": [{"Name": "api", "Consumers": [{"Peer": "cluster-02"}]}]},
    ),
    (
        'Kind = "mesh"\nTLS {\n  Incoming {\n    TLSMinVersion = "TLSv1_2"\n  }\n}\n'
        'Peering { PeerThroughMeshGateways = true }\n',
        {"Kind": "mesh", "Name": "mesh", "TLS": {"Incoming": {"TLSMinVersion": "TLSv1_2"}},
         "Peering": {"PeerThroughMeshGateways": True}},
    ),
    (
        '{"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"}',
        {"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"},
    ),
]


@pytest.mark.parametrize(("text", "expected"), HCL_FILES)
def test_config_files(text: str, expected: dict[str, Any]) -> None:
    assert check(from_hcl(text)) == expected
    assert check(from_hcl(text.encode())) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('Kind = "mesh"\nTLS {\n  Incoming = @\n}\n', "line 3, column 13"),
        ('Kind = "mesh"\nTLS {\n  Incoming = }\n}\n', "line 3, column 14: unexpected rightbrace"),
        ('Kind = "mesh"\nTLS {\n', "line 3"),
        ('{"Kind": "mesh",\n "Name": }', "line 2"),
        ('Kind = "mesh"\nKind = "service-defaults"\n', 'duplicate config key "Kind"'),
        ('[1, 2]', "line 1"),
        (b"Kind = \"\xff\"", "not UTF-8"),
    ],
)
def test_unparseable_files(text: str | bytes, fragment: str) -> None:
    with pytest.raises(ConfigEntryError) as info:
        from_hcl(text)
    assert info.value.field == ""
    assert fragment in info.value.message.lower() or fragment in info.value.message


def test_parser_recovers_after_a_bad_file() -> None:
    with pytest.raises(ConfigEntryError):
        from_hcl('Kind = "mesh"\nKind = "mesh"\n')
    assert from_hcl('Kind = "mesh"') == {"Kind": "mesh"}


# --------------------------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------------------------

SAFE_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/.: ", max_size=12)
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
KEYS = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def spellings(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), snake(name)])


def obj(*required: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object with a random subset of `fields` (always `required`), keys in random spelling."""

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        out = {}
        for name, strategy in fields.items():
            if name in required or draw(st.booleans()):
                out[draw(spellings(name))] = draw(strategy)
        return out

    return build()


def case_variants(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from(values).flatmap(lambda v: st.sampled_from([v, v.upper()]))


META = st.dictionaries(KEYS, SAFE_TEXT, max_size=3)
MESH_GATEWAY = obj(Mode=st.sampled_from(["", "none", "local", "remote"]))
PROTOCOL = case_variants("", "http", "http2", "grpc", "tcp")
FREE_VALUE = st.one_of(SAFE_TEXT, st.integers(-1000, 1000), st.booleans(), st.lists(SAFE_TEXT, max_size=3))
FREE_MAP = st.recursive(st.dictionaries(KEYS, FREE_VALUE, max_size=3),
                        lambda inner: st.dictionaries(KEYS, inner, max_size=2), max_leaves=6)


def upstream(name: str | None) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, Any] = {
        "Protocol": PROTOCOL, "MeshGateway": MESH_GATEWAY, "ConnectTimeoutMs": st.integers(0, 60000),
        "Limits": obj(MaxConnections=st.integers(0, 1000)),
        "PassiveHealthCheck": obj(Interval=st.sampled_from(["10s", "1m30s", "250ms"]),
                                  MaxEjectionPercent=st.integers(0, 100)),
    }
    if name is None:
        return obj(**fields)
    return obj("Name", Name=st.just(name), **fields)


PROXY_DEFAULTS = obj(
    "Kind", Kind=st.just("proxy-defaults"), Name=st.sampled_from(["global", ""]), Meta=META,
    Config=st.tuples(FREE_MAP, st.one_of(st.none(), PROTOCOL)).map(
        lambda pair: pair[0] if pair[1] is None else {**pair[0], "protocol": pair[1]}),
    Mode=st.sampled_from(["", "direct", "transparent"]), MutualTLSMode=st.sampled_from(["", "strict", "permissive"]),
    MeshGateway=MESH_GATEWAY,
    TransparentProxy=obj(OutboundListenerPort=st.integers(0, 65535), DialedDirectly=st.booleans()),
    Expose=obj(Checks=st.booleans(), Paths=st.lists(obj(
        ListenerPort=st.integers(0, 65535), Path=st.sampled_from(["/metrics", "/health"]),
        LocalPathPort=st.integers(0, 65535), Protocol=st.sampled_from(["http", "http2"])), max_size=2)),
    AccessLogs=obj(Enabled=st.booleans(), Type=st.sampled_from(["stdout", "stderr"])),
    PrioritizeByLocality=obj(Mode=st.sampled_from(["none", "failover"])),
)
SERVICE_DEFAULTS = obj(
    "Kind", "Name", Kind=st.just("service-defaults"), Name=NAMES, Meta=META, Protocol=PROTOCOL,
    MeshGateway=MESH_GATEWAY, MaxInboundConnections=st.integers(0, 10000), ExternalSNI=NAMES,
    BalanceInboundConnections=st.sampled_from(["", "exact_balance"]),
    UpstreamConfig=obj(
        Overrides=st.lists(NAMES, unique=True, max_size=3).flatmap(
            lambda names: st.tuples(*[upstream(n) for n in names]).map(list)),
        Defaults=upstream(None)),
)
SERVICE_DEFAULTS_DESTINATION = obj(
    "Kind", "Name", "Destination", Kind=st.just("service-defaults"), Name=NAMES, Protocol=PROTOCOL,
    Destination=obj("Addresses", "Port", Addresses=st.lists(st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).map(
        lambda label: f"{label}.example.com"), min_size=1,
                                                             max_size=3, unique=True),
                    Port=st.integers(1, 65535)),
)


def intention_source(name: str, permissions_allowed: bool) -> st.SearchStrategy[dict[str, Any]]:
    permission = obj("Action", "HTTP", Action=st.sampled_from(["allow", "deny"]), HTTP=obj(
        "PathPrefix", PathPrefix=st.sampled_from(["/", "/api"]),
        Methods=st.lists(st.sampled_from(["GET", "put", "Post"]), unique_by=str.upper, max_size=3)))
    decision = st.sampled_from(["allow", "deny"]).map(lambda a: ("Action", a))
    if permissions_allowed:
        decision = decision | st.lists(permission, min_size=1, max_size=2).map(lambda p: ("Permissions", p))
    extras = obj(Description=SAFE_TEXT, Peer=st.just("cluster-02") if name != "*" else st.just(""))
    return st.tuples(decision, extras).map(lambda pair: {"Name": name, pair[0][0]: pair[0][1], **pair[1]})


SERVICE_INTENTIONS = st.one_of(NAMES, st.just("*")).flatmap(lambda destination: obj(
    "Kind", "Name", "Sources", Kind=st.just("service-intentions"), Name=st.just(destination), Meta=META,
    Sources=st.lists(st.one_of(NAMES, st.just("*")), unique=True, min_size=1, max_size=4).flatmap(
        lambda names: st.tuples(*[intention_source(n, destination != "*") for n in names]).map(list)),
))
EXPORTED_SERVICES = obj(
    "Kind", "Name", "Services", Kind=st.just("exported-services"), Name=st.just("default"), Meta=META,
    Services=st.lists(obj("Name", "Consumers", Name=NAMES, Consumers=st.lists(
        obj("Peer", Peer=NAMES), min_size=1, max_size=2)), max_size=3),
)
TLS_DIRECTION = st.sampled_from(["TLSv1_0", "TLSv1_1", "TLSv1_2"]).flatmap(lambda low: obj(
    TLSMinVersion=st.just(low), TLSMaxVersion=st.sampled_from(["TLSv1_2", "TLSv1_3"]),
    CipherSuites=st.lists(st.sampled_from(CIPHER_SUITES), unique=True, max_size=3)))
MESH = obj(
    "Kind", Kind=st.just("mesh"), Meta=META,
    TransparentProxy=obj(MeshDestinationsOnly=st.booleans()), AllowEnablingPermissiveMutualTLS=st.booleans(),
    ValidateClusters=st.booleans(), TLS=obj(Incoming=TLS_DIRECTION, Outgoing=TLS_DIRECTION),
    HTTP=obj(SanitizeXForwardedClientCert=st.booleans()), Peering=obj(PeerThroughMeshGateways=st.booleans()),
)
VALID_RAW = st.one_of(PROXY_DEFAULTS, SERVICE_DEFAULTS, SERVICE_DEFAULTS_DESTINATION, SERVICE_INTENTIONS,
                      EXPORTED_SERVICES, MESH)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(VALID_RAW)
def test_generated_valid_entries_validate_and_normalize_idempotently(raw: dict[str, Any]) -> None:
    entry = check(raw)
    assert entry["Kind"] in KINDS
    again = normalize(entry)
    assert again == entry
    assert is_same_content(again, entry) and content_hash(again) == content_hash(entry)
    assert normalize(json.loads(json.dumps(entry))) == entry


def to_hcl(value: dict[str, Any], repeat_blocks: bool, indent: str = "") -> str:
    """A small HCL writer for the round-trip property: objects as blocks, object lists either as
    a list literal or as repeated blocks, quoted keys when not bare identifiers."""
    lines = []
    for key, item in value.items():
        name = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else json.dumps(key)
        if isinstance(item, dict):
            lines += [f"{indent}{name} {{", to_hcl(item, repeat_blocks, indent + "  "), f"{indent}}}"]
        elif isinstance(item, list) and item and all(isinstance(i, dict) for i in item):
            if repeat_blocks:
                for block in item:
                    lines += [f"{indent}{name} {{", to_hcl(block, repeat_blocks, indent + "  "), f"{indent}}}"]
            else:
                lines.append(f"{indent}{name} = [")
                for block in item:
                    lines += [f"{indent}  {{", to_hcl(block, repeat_blocks, indent + "    "), f"{indent}  }},"]
                lines.append(f"{indent}]")
        else:
            lines.append(f"{indent}{name} = {json.dumps(item)}")
    return "\n".join(line for line in lines if line)


@PROPERTY_SETTINGS
@given(VALID_RAW, st.booleans())
def test_round_trip_hcl_to_entry_to_json(raw: dict[str, Any], repeat_blocks: bool) -> None:
    text = to_hcl(raw, repeat_blocks)
    entry = check(from_hcl(text))
    assert entry == normalize(raw), text
    assert normalize(json.loads(json.dumps(entry))) == entry


FIELD_NAMES = [
    "Kind", "Name", "Meta", "Config", "Mode", "MutualTLSMode", "MeshGateway", "TransparentProxy", "Protocol",
    "UpstreamConfig", "Overrides", "Defaults", "Destination", "Addresses", "Port", "Sources", "Action",
    "Permissions", "HTTP", "PathExact", "PathPrefix", "Header", "Methods", "Present", "Exact", "Peer",
    "SamenessGroup", "Precedence", "Type", "Description", "LegacyID", "Services", "Consumers", "Partition",
    "Namespace", "TLS", "Incoming", "Outgoing", "TLSMinVersion", "CipherSuites", "Expose", "Paths", "Limits",
    "PassiveHealthCheck", "Interval", "JWT", "Providers", "AccessLogs", "EnvoyExtensions", "CreateIndex",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
    st.sampled_from(["", "*", "a*", "http", "allow", "TLSv1_3", "\ud800", "10s", "default", "global"]),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=4)), inner, max_size=4),
    max_leaves=25,
)


def assert_refused_cleanly(raw: Any) -> None:
    try:
        entry = normalize(raw)
        validate(entry)
        content_hash(entry)
    except ConfigEntryError as error:
        assert "canonical form" not in error.message, f"normalize let through something validate trips on: {error}"


@PROPERTY_SETTINGS
@given(st.sampled_from(KINDS), st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=5), JUNK,
                                               max_size=6))
def test_junk_only_ever_raises_config_entry_error(kind: str, body: dict[Any, Any]) -> None:
    assert_refused_cleanly({**body, "Kind": kind})


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [prefix] + [p for k, v in value.items() for p in leaf_paths(v, prefix + (k,))]
    if isinstance(value, list):
        return [prefix] + [p for i, v in enumerate(value) for p in leaf_paths(v, prefix + (i,))]
    return [prefix]


@PROPERTY_SETTINGS
@given(VALID_RAW, st.data())
def test_valid_entries_with_one_corrupted_value_fail_cleanly(raw: dict[str, Any], data: st.DataObject) -> None:
    entry = check(raw)
    path = data.draw(st.sampled_from([p for p in leaf_paths(entry) if p and p != ("Kind",)]))
    target: Any = entry
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(JUNK)
    assert_refused_cleanly(entry)


@PROPERTY_SETTINGS
@given(st.one_of(st.text(max_size=60), st.text(alphabet='{}[]=",\n abK1:#-', max_size=60)))
def test_any_text_parses_to_a_dict_or_raises_config_entry_error(text: str) -> None:
    try:
        parsed = from_hcl(text)
    except ConfigEntryError:
        return
    assert isinstance(parsed, dict)
    assert_refused_cleanly(parsed)


def test_the_record_of_an_entry_carries_its_kind_name_and_content_hash() -> None:
    """Every writer builds the stored record with `ConfigEntry.of`, so the hash replication
    compares (§B.5) is the content hash of exactly the body stored."""
    body = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
    record = ConfigEntry.of(body)
    assert (record.kind, record.name, record.body) == ("service-defaults", "web", body)
    assert record.hash == content_hash(body) != 0

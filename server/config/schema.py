"""Every key a config file or the command line may set, and what values each accepts.

Each key maps to a converter that returns the typed value or raises ``ValueError(reason)``; the
loader turns that reason into a ``ConfigError`` naming the file and the key. Converters check one
value alone; rules that involve several keys live in ``checks.py``, defaults in ``settings.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.server.config.addresses import DNS_LABEL_RE, canonical_host, split_host_port
from meshfed.server.config.cluster_key import validate_key

LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
MAX_RAFT_MULTIPLIER = 10
ACL_DEFAULT_POLICIES = ("allow", "deny")
ACL_DOWN_POLICIES = ("extend-cache", "deny", "allow", "async-cache")
# Consul's rule for datacenter names; they end up in TLS names and federation-state keys.
_DATACENTER_RE = re.compile(r"^[a-z0-9_-]+$")


def show_value(value: Any) -> str:
    """A value with its type, so that "got '5' (str)" explains why a number was refused."""
    return f"{value!r} ({type(value).__name__})"


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {show_value(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {show_value(value)}")
    return value


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {show_value(value)}")
        return value

    return convert


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"must be a number greater than 0, got {show_value(value)}")
    return float(value)


def _duration(*, allow_zero: bool) -> Callable[[Any], float]:
    """Durations are Go strings in files ("30s"), or plain numbers of seconds."""
    bound = "0 or more" if allow_zero else "greater than 0"

    def convert(value: Any) -> float:
        accepted = f'must be a duration {bound} such as "30s", "5m" or "72h" (or a number of seconds)'
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{accepted}, got {show_value(value)}")
        try:
            seconds = parse_duration(value) if isinstance(value, str) else float(value)
        except ValueError:
            raise ValueError(f"{accepted}, got {value!r}") from None
        if seconds < 0 or (seconds == 0 and not allow_zero):
            raise ValueError(f"{accepted}, got {value!r}")
        return seconds

    return convert


def _choice(options: Sequence[str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {show_value(value)}")
        return value.lower()

    return convert


def _datacenter(*, allow_empty: bool) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value)
        if (text or not allow_empty) and not _DATACENTER_RE.match(text):
            raise ValueError(f"must contain only lower-case letters, digits, - and _, got {text!r}")
        return text

    return convert


def _secret(value: Any) -> str:
    """A token: never echoed back, so a typo'd secret does not end up in a log line."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got a {type(value).__name__}")
    return value


def _node_name(value: Any) -> str:
    """Node names become the first label of ``<node>.server.<dc>.<domain>`` TLS names."""
    text = _string(value)
    if not DNS_LABEL_RE.match(text):
        raise ValueError(f"must be a DNS label (letters, digits and -, at most 63), got {text!r}")
    return text


def _domain(value: Any) -> str:
    text = _string(value).rstrip(".").lower()
    if not text or not all(DNS_LABEL_RE.match(label) for label in text.split(".")):
        raise ValueError(f"must be a DNS name such as 'consul', got {value!r}")
    return text


def _host(*, allow_empty: bool) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value)
        if not text and allow_empty:
            return ""
        try:
            return canonical_host(text)
        except ValueError as error:
            raise ValueError(f"must be an IP address or host name without a port: {error}") from None

    return convert


def _cluster_key(value: Any) -> str:
    text = _string(value)
    if text:
        validate_key(text)
    return text


def _address_list(*, port_required: bool) -> Callable[[Any], tuple[str, ...]]:
    accepted = '"host:port"' if port_required else '"host" or "host:port"'

    def convert(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"must be a list of {accepted} strings, got {show_value(value)}")
        for item in value:
            try:
                _, port = split_host_port(item)
            except ValueError as error:
                raise ValueError(f"{error}; accepted: {accepted}") from None
            if port_required and port is None:
                raise ValueError(f"{item!r} has no port; accepted: {accepted}")
        return tuple(value)

    return convert


_PORT = _integer(1, 65535)
_INTERVAL = _duration(allow_zero=False)
_COUNT = _integer(1, 1_000_000)

# Every key a file or the command line may set, with its converter. A dotted key's last part is the
# attribute; its first part names the nested dataclass when there is one (``ports.http`` ->
# ``Config.ports.http``), and is only a file-level grouping otherwise (``performance.raft_multiplier``).
SCHEMA: dict[str, Callable[[Any], Any]] = {
    "node_name": _node_name,
    "datacenter": _datacenter(allow_empty=False),
    "primary_datacenter": _datacenter(allow_empty=True),
    "data_dir": _string,
    "bind_addr": _host(allow_empty=False),
    "advertise_addr": _host(allow_empty=True),
    "client_addr": _host(allow_empty=True),
    "ports.http": _PORT,
    "ports.server": _PORT,
    "ports.raft": _PORT,
    "server": _boolean,
    "bootstrap_expect": _integer(1, 15),
    "retry_join": _address_list(port_required=False),
    "encrypt": _cluster_key,
    "domain": _domain,
    "log_level": _choice(LOG_LEVELS),
    "primary_gateways": _address_list(port_required=True),
    "primary_gateways_interval": _INTERVAL,
    "disable_primary_gateway_fallback": _boolean,
    "leave_on_terminate": _boolean,
    "connect.enabled": _boolean,
    "connect.enable_mesh_gateway_wan_federation": _boolean,
    "tls.defaults.ca_file": _string,
    "tls.defaults.cert_file": _string,
    "tls.defaults.key_file": _string,
    "tls.defaults.verify_incoming": _boolean,
    "tls.defaults.verify_outgoing": _boolean,
    "tls.internal_rpc.verify_server_hostname": _boolean,
    "telemetry.prometheus_retention_time": _duration(allow_zero=True),
    "telemetry.disable_hostname": _boolean,
    "telemetry.metrics_prefix": _string,
    "performance.raft_multiplier": _integer(1, MAX_RAFT_MULTIPLIER),
    "federation_state_ttl": _INTERVAL,
    "federation_state_refresh_interval": _INTERVAL,
    "federation_state_anti_entropy_sync_interval": _INTERVAL,
    "replication_rate": _positive_number,
    "replication_burst": _COUNT,
    "replication_apply_limit": _COUNT,
    "raft_snapshot_threshold": _integer(1, 2**31 - 1),
    "raft_snapshot_interval": _INTERVAL,
    "peering_stream_timeout": _INTERVAL,
    "raft_journal_sync": _choice(("always", "interval")),
    "acl.enabled": _boolean,
    "acl.default_policy": _choice(ACL_DEFAULT_POLICIES),
    "acl.down_policy": _choice(ACL_DOWN_POLICIES),
    "acl.enable_token_persistence": _boolean,
    "acl.enable_token_replication": _boolean,
    "acl.token_ttl": _duration(allow_zero=True),
    "acl.policy_ttl": _duration(allow_zero=True),
    "acl.role_ttl": _duration(allow_zero=True),
    "acl.token_min_expiration_ttl": _duration(allow_zero=False),
    "acl.token_max_expiration_ttl": _duration(allow_zero=False),
    "acl.tokens.initial_management": _secret,
    "acl.tokens.replication": _secret,
    "acl.tokens.agent": _secret,
    "acl.tokens.default": _secret,
}
# Keys whose values add up across sources (as Consul does for list-valued keys) instead of the
# later source winning.
CONCATENATED = frozenset({"retry_join", "primary_gateways", "services"})

# Consul agent keys that meshfed accepts and does not use, so that a typical Consul server config
# file loads (issue #12): the loader collects them and the agent logs ONE warning listing them all.
# A key here is not checked at all; a key in neither SCHEMA nor these is an error with a suggestion.
# Gossip, DNS, the UI, client agents and log files are Consul features meshfed has no use for, or
# does differently (docs/configuration.md). HTTPS (`tls.https`, `ports.https`) stays an error: an
# operator who asked for an encrypted API must not get a plain one with only a warning.
UNUSED_KEYS = frozenset({
    "skip_leave_on_interrupt", "rejoin_after_leave", "disable_update_check",
    "enable_syslog", "syslog_facility", "log_file", "log_json", "log_rotate_bytes", "log_rotate_duration",
    "log_rotate_max_files", "enable_script_checks", "enable_local_script_checks", "disable_remote_exec",
    "enable_debug", "ui", "node_id", "disable_host_node_id", "pid_file", "raft_protocol", "retry_interval",
    "retry_max", "retry_join_wan", "retry_interval_wan", "retry_max_wan", "start_join", "start_join_wan",
    "advertise_addr_wan", "advertise_addr_ipv4", "advertise_addr_ipv6", "serf_lan", "serf_wan",
    "translate_wan_addrs", "recursors", "encrypt_verify_incoming", "encrypt_verify_outgoing",
    "disable_keyring_file", "reconnect_timeout", "reconnect_timeout_wan", "check_update_interval",
    "disable_coordinates", "discard_check_output", "alt_domain", "bootstrap", "experiments",
    "ports.grpc", "ports.grpc_tls", "ports.dns", "ports.serf_lan", "ports.serf_wan",
    "ports.sidecar_min_port", "ports.sidecar_max_port", "ports.expose_min_port", "ports.expose_max_port",
    "tls.defaults.tls_min_version", "tls.defaults.tls_cipher_suites", "connect.ca_provider",
    "telemetry.statsd_address", "telemetry.statsite_address", "telemetry.dogstatsd_addr",
    "telemetry.dogstatsd_tags", "performance.leave_drain_time", "performance.rpc_hold_timeout",
})
# Blocks accepted whole, whatever they hold.
UNUSED_BLOCKS = frozenset({
    "ui_config", "addresses", "dns_config", "limits", "http_config", "audit", "auto_encrypt",
    "auto_config", "autopilot", "node_meta", "raft_logstore", "rpc", "watches", "config_entries",
    "unix_sockets", "peering", "reporting", "gossip_lan", "gossip_wan", "xds",
    "tls.grpc", "connect.ca_config",
})
# First parts of dotted keys that name a nested dataclass of ``Config``.
SECTIONS = ("ports", "connect", "tls", "telemetry", "acl", "acl.tokens")
# Names that open a block of keys in a file (``tls`` holds further blocks, not keys).
BLOCKS = {key.rsplit(".", 1)[0] for key in SCHEMA if "." in key} | {"tls"}


def target(key: str) -> tuple[str, str]:
    """(nested dataclass field or "", attribute) that a dotted key sets."""
    parent, _, attribute = key.rpartition(".")
    # The deepest section that holds the key: `acl.tokens.agent` sets `Config.acl.tokens.agent`.
    while parent and parent not in SECTIONS:
        parent = parent.rpartition(".")[0]
    return parent, attribute

"""Agent configuration: the one place that owns every default and every configuration error.

A configuration moves through four stages, each of which can fail with a ``ConfigError`` that names
the file (or "command line"), the dotted key and what would have been accepted:

1. read: each file is parsed as HCL or JSON, chosen by its extension;
2. flatten: nested blocks become dotted keys (``ports.http``); unknown keys are refused here, while
   we still know which file they came from, and each value is converted to its type;
3. merge: files in order, then command-line overrides; later sources win, except ``retry_join`` and
   ``primary_gateways``, which are concatenated (as Consul does for list-valued keys);
4. check: rules that involve several keys (cluster key, peer count, TLS, WAN federation) run on the
   merged result, and the peers are normalised to ``host:port``.

Consul's key names are kept so that operators can reuse what they know (DESIGN.md §11). meshfed has
no gossip layer, so ``retry_join`` is the static Raft peer list rather than a discovery hint, and
``encrypt`` is mandatory: PySyncObj's Raft port unpickles what it receives, so without the cluster
key anyone who can reach the port can run code on the server.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hcl

from meshfed.server.config.durations import parse_duration

COMMAND_LINE = "command line"
DEFAULTS = "defaults"
CONFIG_EXTENSIONS = (".hcl", ".json")
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
CLUSTER_KEY_SIZES = (16, 24, 32)
KEYGEN_BYTES = 32
MAX_RAFT_MULTIPLIER = 10
# Consul's rule for datacenter names; they end up in TLS names and federation-state keys.
_DATACENTER_RE = re.compile(r"^[a-z0-9_-]+$")
_DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

MISSING_KEY_REASON = (
    "a cluster key is required because the Raft port speaks pickle; make one with `meshfed keygen`"
)


class ConfigError(Exception):
    """A configuration the agent must not start with; says where, which key and why."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")


@dataclass(frozen=True)
class Ports:
    http: int = 8500
    server: int = 8300
    raft: int = 8301


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify_incoming: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False

    @property
    def enabled(self) -> bool:
        """Servers serve TLS only when they have their own certificate and key."""
        return bool(self.cert_file and self.key_file)


@dataclass(frozen=True)
class ConnectConfig:
    enabled: bool = False
    enable_mesh_gateway_wan_federation: bool = False


@dataclass(frozen=True)
class TelemetryConfig:
    prometheus_retention_time: float = 60.0
    disable_hostname: bool = True
    metrics_prefix: str = "consul"


@dataclass(frozen=True)
class Config:
    """The validated agent configuration. Build it with ``load``; direct construction skips checks."""

    node_name: str
    datacenter: str = "dc1"
    primary_datacenter: str = ""
    data_dir: str = ""
    bind_addr: str = "127.0.0.1"
    advertise_addr: str = ""
    client_addr: str = ""
    ports: Ports = field(default_factory=Ports)
    server: bool = True
    bootstrap_expect: int = 1
    retry_join: tuple[str, ...] = ()
    encrypt: str = ""
    domain: str = "consul"
    dev: bool = False
    log_level: str = "info"
    primary_gateways: tuple[str, ...] = ()
    primary_gateways_interval: float = 30.0
    disable_primary_gateway_fallback: bool = False
    connect: ConnectConfig = field(default_factory=ConnectConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    raft_multiplier: int = 1
    federation_state_ttl: float = 72 * 3600.0
    federation_state_refresh_interval: float = 600.0
    federation_state_anti_entropy_sync_interval: float = 5.0
    replication_rate: float = 1.0
    replication_burst: int = 5
    replication_apply_limit: int = 100
    raft_snapshot_threshold: int = 8192
    raft_snapshot_interval: float = 300.0
    # "always": an ack means synced to disk on a majority; "interval": in their page cache, synced
    # every second (faster; a power loss of a majority can lose that second). server/raft/durability.py
    raft_journal_sync: str = "always"

    @property
    def primary(self) -> str:
        """A datacenter that names no primary is its own primary."""
        return self.primary_datacenter or self.datacenter

    @property
    def is_primary(self) -> bool:
        return self.primary == self.datacenter

    @property
    def advertise(self) -> str:
        return self.advertise_addr or self.bind_addr

    @property
    def raft_address(self) -> str:
        return join_host_port(self.advertise, self.ports.raft)

    @property
    def rpc_address(self) -> str:
        return join_host_port(self.advertise, self.ports.server)

    @property
    def http_address(self) -> str:
        return join_host_port(self.client_addr or self.bind_addr, self.ports.http)


# --- cluster key -------------------------------------------------------------------------------


def generate_key() -> str:
    """A fresh cluster key in the form ``consul keygen`` prints (base64 of 32 random bytes)."""
    return base64.b64encode(os.urandom(KEYGEN_BYTES)).decode("ascii")


def validate_key(key: str) -> bytes:
    """Decode a cluster key, refusing anything that is not base64 of 16, 24 or 32 bytes."""
    if not isinstance(key, str) or not key:
        raise ValueError("the cluster key is empty; make one with `meshfed keygen`")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the cluster key is not valid base64; make one with `meshfed keygen`") from None
    if len(raw) not in CLUSTER_KEY_SIZES:
        raise ValueError(
            f"the cluster key decodes to {len(raw)} bytes; accepted: base64 of 16, 24 or 32 bytes"
            " (make one with `meshfed keygen`)"
        )
    return raw


# --- addresses ---------------------------------------------------------------------------------


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed so the port stays unambiguous."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal; the host comes back canonical.

    Canonical means IP literals in ``ipaddress`` form and names lower-cased, so that the same peer
    written two ways is recognised as one (and as ourselves).
    """
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{text!r} is not host, host:port or [ipv6]:port")
        port_text = tail[1:] if tail else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    return _canonical_host(host), (None if port_text is None else _port_number(port_text, text))


def _port_number(port_text: str, whole: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{whole!r} has port {port_text!r}; accepted: 1 to 65535")
    return int(port_text)


def _canonical_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not host or len(host) > 253 or not all(_DNS_LABEL_RE.match(label) for label in labels):
        raise ValueError(f"{host!r} is neither an IP address nor a DNS name")
    return host.rstrip(".").lower()


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def normalise_retry_join(
    entries: Sequence[str], default_port: int, own_addresses: Sequence[str] = ()
) -> tuple[str, ...]:
    """Turn peer entries into distinct ``host:port`` strings, without ourselves.

    A bare host gets ``default_port`` (the Raft port) appended; order is kept so that every server
    of a cluster that shares one file sees its peers in the same order.
    """
    own = set(own_addresses)
    peers: list[str] = []
    for entry in entries:
        host, port = split_host_port(entry)
        address = join_host_port(host, default_port if port is None else port)
        if address not in own and address not in peers:
            peers.append(address)
    return tuple(peers)


# --- value converters: each returns the typed value or raises ValueError(reason) ---------------


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_show(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_show(value)}")
    return value


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {_show(value)}")
        return value

    return convert


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"must be a number greater than 0, got {_show(value)}")
    return float(value)


def _duration(*, allow_zero: bool) -> Callable[[Any], float]:
    """Durations are Go strings in files ("30s"), or plain numbers of seconds."""
    bound = "0 or more" if allow_zero else "greater than 0"

    def convert(value: Any) -> float:
        accepted = f'must be a duration {bound} such as "30s", "5m" or "72h" (or a number of seconds)'
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{accepted}, got {_show(value)}")
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
            raise ValueError(f"must be one of {', '.join(options)}, got {_show(value)}")
        return value.lower()

    return convert


def _datacenter(*, allow_empty: bool) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value)
        if (text or not allow_empty) and not _DATACENTER_RE.match(text):
            raise ValueError(f"must contain only lower-case letters, digits, - and _, got {text!r}")
        return text

    return convert


def _node_name(value: Any) -> str:
    """Node names become the first label of ``<node>.server.<dc>.<domain>`` TLS names."""
    text = _string(value)
    if not _DNS_LABEL_RE.match(text):
        raise ValueError(f"must be a DNS label (letters, digits and -, at most 63), got {text!r}")
    return text


def _domain(value: Any) -> str:
    text = _string(value).rstrip(".").lower()
    if not text or not all(_DNS_LABEL_RE.match(label) for label in text.split(".")):
        raise ValueError(f"must be a DNS name such as 'consul', got {value!r}")
    return text


def _host(*, allow_empty: bool) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value)
        if not text and allow_empty:
            return ""
        try:
            return _canonical_host(text)
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
            raise ValueError(f"must be a list of {accepted} strings, got {_show(value)}")
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
_SCHEMA: dict[str, Callable[[Any], Any]] = {
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
    "raft_journal_sync": _choice(("always", "interval")),
}
_CONCATENATED = frozenset({"retry_join", "primary_gateways"})
_SECTIONS = ("ports", "connect", "tls", "telemetry")
_BLOCKS = {key.rsplit(".", 1)[0] for key in _SCHEMA if "." in key} | {"tls"}


def _target(key: str) -> tuple[str, str]:
    """(nested dataclass field or "", attribute) that a dotted key sets."""
    first, _, _ = key.partition(".")
    return (first if first in _SECTIONS else ""), key.rsplit(".", 1)[-1]


# --- reading, flattening and merging -----------------------------------------------------------


def _read_file(path: str) -> Mapping[str, Any]:
    extension = Path(path).suffix.lower()
    if extension not in CONFIG_EXTENSIONS:
        raise ConfigError(path, "", "unsupported file extension; accepted: .hcl or .json")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, "", f"cannot read the file: {error}") from None
    try:
        raw = hcl.loads(text) if extension == ".hcl" else json.loads(text)
    except Exception as error:  # pyhcl raises assorted types for syntax errors
        raise ConfigError(path, "", f"not valid {extension[1:].upper()}: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(path, "", "the top level must be an object of keys")
    return raw


def _flatten(raw: Mapping[str, Any], source: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted key, typed value)`` in document order, refusing unknown keys and bad values."""
    for name, value in raw.items():
        key = f"{prefix}{name}"
        if key in _BLOCKS and "." not in str(name):
            # pyhcl returns a repeated block (`connect {}` twice) as a list of dicts; later ones win.
            parts = value if isinstance(value, list) else [value]
            if not all(isinstance(part, dict) for part in parts):
                raise ConfigError(source, key, f"must be a block of keys, got {_show(value)}")
            for part in parts:
                yield from _flatten(part, source, key + ".")
        elif key in _SCHEMA and "." not in str(name):
            try:
                yield key, _SCHEMA[key](value)
            except ValueError as error:
                raise ConfigError(source, key, str(error)) from None
        else:
            siblings = [known for known in (*_SCHEMA, *_BLOCKS) if known.startswith(prefix)]
            close = difflib.get_close_matches(key, siblings, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(source, key, f"unknown key{hint}")


def _merge_into(merged: dict[str, tuple[Any, str]], raw: Mapping[str, Any], source: str) -> None:
    for key, value in _flatten(raw, source):
        if key in _CONCATENATED and key in merged:
            value = merged[key][0] + value
        merged[key] = (value, source)


def _default_node_name() -> str:
    return socket.gethostname().split(".", 1)[0]


def load(files: Sequence[str], overrides: Mapping[str, Any] | None = None, *, dev: bool = False) -> Config:
    """Read, merge and check the agent configuration.

    Args:
        files: config files, merged in order (later wins; ``retry_join``/``primary_gateways`` add up).
        overrides: command-line values in config-key form, nested like a file (``{"ports": {...}}``).
        dev: single throw-away server: a generated cluster key, no data_dir needed.

    Raises:
        ConfigError: naming the file (or "command line"), the dotted key and the reason.
    """
    merged: dict[str, tuple[Any, str]] = {}
    for path in files:
        _merge_into(merged, _read_file(path), path)
    if overrides:
        _merge_into(merged, overrides, COMMAND_LINE)
    if "node_name" not in merged:
        try:
            merged["node_name"] = (_node_name(_default_node_name()), DEFAULTS)
        except ValueError as error:
            raise ConfigError(
                DEFAULTS, "node_name", f"the host name is unusable ({error}); set node_name"
            ) from None
    sections: dict[str, dict[str, Any]] = {name: {} for name in ("", *_SECTIONS)}
    for key, (value, _) in merged.items():
        section, attribute = _target(key)
        sections[section][attribute] = value
    config = Config(
        **sections[""],
        dev=dev,
        ports=Ports(**sections["ports"]),
        connect=ConnectConfig(**sections["connect"]),
        tls=TLSConfig(**sections["tls"]),
        telemetry=TelemetryConfig(**sections["telemetry"]),
    )
    fallback = ", ".join(files) if files else COMMAND_LINE

    def source_of(*keys: str) -> str:
        """Where the first of ``keys`` that was set came from; a missing value blames every file."""
        return next((merged[key][1] for key in keys if key in merged), fallback)

    return _check(config, source_of)


def _check(config: Config, source_of: Callable[..., str]) -> Config:
    """Rules that involve several keys; returns the config with derived values filled in."""

    def fail(key: str, reason: str, *related: str) -> ConfigError:
        return ConfigError(source_of(key, *related), key, reason)

    if not config.server:
        raise fail("server", "meshfed runs server agents only; accepted: true")
    if not config.data_dir and not config.dev:
        raise fail("data_dir", "required: the Raft journal and snapshots live there (or run with -dev)")
    encrypt = config.encrypt or (generate_key() if config.dev else "")
    if not encrypt:
        raise fail("encrypt", MISSING_KEY_REASON)
    if config.dev and (config.bootstrap_expect != 1 or config.retry_join):
        key = "retry_join" if config.retry_join else "bootstrap_expect"
        raise fail(key, "dev mode runs a single server; accepted: bootstrap_expect = 1 and no retry_join")
    if _is_unspecified(config.bind_addr) and not config.advertise_addr:
        raise fail("advertise_addr", f"required when bind_addr is {config.bind_addr}: peers cannot dial it")
    if _is_unspecified(config.advertise):
        raise fail("advertise_addr", f"{config.advertise} cannot be dialled; accepted: a reachable address")
    ports = config.ports
    if len({ports.http, ports.server, ports.raft}) != 3:
        clash = "ports.raft" if ports.raft in (ports.http, ports.server) else "ports.server"
        raise fail(
            clash, f"http, server and raft ports must differ, got {ports.http}, {ports.server}, {ports.raft}"
        )
    own = [config.raft_address]
    if not _is_unspecified(config.bind_addr):
        own.append(join_host_port(config.bind_addr, ports.raft))
    try:
        peers = normalise_retry_join(config.retry_join, ports.raft, own)
    except ValueError as error:
        raise fail("retry_join", str(error)) from None
    if len(peers) != config.bootstrap_expect - 1:
        raise fail(
            "retry_join",
            f"lists {len(peers)} other server(s) but bootstrap_expect = {config.bootstrap_expect} needs exactly"
            f" {config.bootstrap_expect - 1} (every server except this one, as host or host:port)",
            "bootstrap_expect",
        )
    _check_tls(config.tls, fail)
    _check_federation(config, fail)
    if config.federation_state_refresh_interval >= config.federation_state_ttl:
        raise fail(
            "federation_state_refresh_interval",
            "must be shorter than federation_state_ttl, or live datacenters get pruned between refreshes",
        )
    tls = replace(config.tls, verify_outgoing=config.tls.verify_outgoing or config.tls.verify_server_hostname)
    return replace(config, encrypt=encrypt, retry_join=peers, tls=tls)


def _check_tls(tls: TLSConfig, fail: Callable[..., ConfigError]) -> None:
    if bool(tls.cert_file) != bool(tls.key_file):
        missing = "tls.defaults.key_file" if tls.cert_file else "tls.defaults.cert_file"
        raise fail(missing, "cert_file and key_file must be set together")
    if tls.verify_incoming and not tls.enabled:
        raise fail("tls.defaults.verify_incoming", "requires tls.defaults.cert_file and key_file")
    verifies = tls.verify_incoming or tls.verify_outgoing or tls.verify_server_hostname
    if verifies and not tls.ca_file:
        raise fail(
            "tls.defaults.ca_file",
            "required when verify_incoming, verify_outgoing or verify_server_hostname is on",
        )


def _check_federation(config: Config, fail: Callable[..., ConfigError]) -> None:
    wanfed = config.connect.enable_mesh_gateway_wan_federation
    if wanfed and not config.connect.enabled:
        raise fail(
            "connect.enable_mesh_gateway_wan_federation", "requires connect.enabled = true", "connect.enabled"
        )
    if wanfed and not config.tls.enabled:
        raise fail(
            "connect.enable_mesh_gateway_wan_federation",
            "requires tls.defaults.cert_file and key_file: mesh gateways route by TLS SNI",
        )
    if config.primary_gateways and not wanfed:
        raise fail("primary_gateways", "requires connect.enable_mesh_gateway_wan_federation = true")
    if config.primary_gateways and config.is_primary:
        raise fail(
            "primary_gateways",
            f"only secondary datacenters dial the primary's gateways, and {config.datacenter!r} is the primary"
            " (set primary_datacenter to the primary's name)",
        )


def config_warnings(config: Config) -> list[str]:
    """Legal but probably unintended settings, for the agent to log once at start (Consul #6847)."""
    warnings: list[str] = []
    wanfed = config.connect.enable_mesh_gateway_wan_federation
    if wanfed and not config.primary_datacenter:
        warnings.append(
            f"primary_datacenter is not set, so {config.datacenter!r} acts as the primary datacenter;"
            " set it on every server of every datacenter"
        )
    if wanfed and not config.is_primary and not config.primary_gateways:
        warnings.append(
            "primary_gateways is empty: this secondary cannot reach the primary until it has replicated"
            " the primary's gateway addresses, which it cannot do on a first start"
        )
    if config.disable_primary_gateway_fallback and config.is_primary:
        warnings.append("disable_primary_gateway_fallback has no effect in the primary datacenter")
    if config.dev:
        warnings.append("dev mode: a single server with a cluster key generated for this run only")
    return warnings

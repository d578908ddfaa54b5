"""The validated agent configuration, and the one place that holds every default value.

A field's default here is what an agent runs with when no file and no flag sets the key; the
schema (``schema.py``) only says which keys exist and what values they accept. Build a ``Config``
with ``load``: direct construction skips every check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshfed.server.config.addresses import join_host_port
from meshfed.server.config.services import ServiceDefinition


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
class ACLTokens:
    """The agent's configured tokens. They are credentials: `repr=False` keeps them out of any log
    line or error that prints the config."""

    initial_management: str = field(default="", repr=False)
    replication: str = field(default="", repr=False)
    agent: str = field(default="", repr=False)
    default: str = field(default="", repr=False)


@dataclass(frozen=True)
class ACLConfig:
    """Consul's `acl { ... }` block (reference/acl.md §1); off unless `enabled`."""

    enabled: bool = False
    default_policy: str = "allow"  # "allow" | "deny"
    down_policy: str = "extend-cache"  # "extend-cache" | "deny" | "allow" | "async-cache"
    enable_token_persistence: bool = False
    enable_token_replication: bool = False
    token_ttl: float = 30.0
    policy_ttl: float = 30.0
    role_ttl: float = 30.0
    # Bounds on a token's lifetime (ExpirationTTL, or ExpirationTime - CreateTime), reference §2.1.
    token_min_expiration_ttl: float = 60.0
    token_max_expiration_ttl: float = 24 * 3600.0
    tokens: ACLTokens = field(default_factory=ACLTokens)


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
    # SIGTERM makes a server leave the Raft configuration before it stops (Consul's key).
    leave_on_terminate: bool = False
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
    acl: ACLConfig = field(default_factory=ACLConfig)
    raft_multiplier: int = 1
    federation_state_ttl: float = 72 * 3600.0
    federation_state_refresh_interval: float = 600.0
    federation_state_anti_entropy_sync_interval: float = 5.0
    replication_rate: float = 1.0
    replication_burst: int = 5
    replication_apply_limit: int = 100
    raft_snapshot_threshold: int = 8192
    raft_snapshot_interval: float = 300.0
    # A peering whose peer said nothing for this long reads FAILING (peering.md §1.6: Consul's 2m).
    peering_stream_timeout: float = 120.0
    # Consul keys found in the files that meshfed accepts but does not use (schema.UNUSED): one warning.
    unused_keys: tuple[str, ...] = ()
    # "always": an ack means synced to disk on a majority; "interval": in their page cache, synced
    # every second (faster; a power loss of a majority can lose that second). server/raft/durability.py
    raft_journal_sync: str = "always"
    # `service`/`services` of every file, in file order, as registrations (config/services.py);
    # registered at start and re-read by reload (server/service_definitions.py).
    services: tuple[ServiceDefinition, ...] = ()

    @property
    def primary(self) -> str:
        """A datacenter that names no primary is its own primary."""
        return self.primary_datacenter or self.datacenter

    @property
    def joins(self) -> bool:
        """retry_join without bootstrap_expect: join a running datacenter (the leader adds this
        server live) instead of bootstrapping one with a fixed member list."""
        return self.bootstrap_expect == 1 and bool(self.retry_join)

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

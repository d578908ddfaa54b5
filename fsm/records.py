"""Records kept by the state machine.

Records are frozen dataclasses with snake_case attributes. They are never mutated in place: an
update replaces the record, so a reader that took references under the store's lock holds a
consistent view after releasing it. Consul's CamelCase JSON shapes are produced at the edges
(`server/http/shapes.py`); the wire form between servers is `to_wire`/`from_wire` below (plain
msgpack-able dicts with snake_case keys).

Equality helpers (`is_same`) follow Consul's `IsSame` rules: raft indexes and timestamps are not
part of what anti-entropy compares (reference/federation.md §1.1).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from meshfed.fsm.config_entries import config_entry_key, content_hash

# Service.Meta key that makes a mesh gateway usable for server RPC transit.
META_WAN_FEDERATION = "consul-wan-federation"
KIND_MESH_GATEWAY = "mesh-gateway"

STATUS_PASSING = "passing"
STATUS_WARNING = "warning"
STATUS_CRITICAL = "critical"
CHECK_STATUSES = (STATUS_PASSING, STATUS_WARNING, STATUS_CRITICAL)


def _frozen_map(value: dict[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@dataclass(frozen=True)
class ServiceAddress:
    address: str = ""
    port: int = 0


@dataclass(frozen=True)
class Weights:
    passing: int = 1
    warning: int = 1


@dataclass(frozen=True)
class Node:
    node: str
    address: str
    id: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def is_same(self, other: Node) -> bool:
        return (
            self.id == other.id
            and self.node.lower() == other.node.lower()
            and self.address == other.address
            and self.datacenter == other.datacenter
            and self.tagged_addresses == other.tagged_addresses
            and self.meta == other.meta
        )


# A sidecar's service kind (Consul's); its `Proxy.DestinationServiceName` names the service it fronts.
CONNECT_PROXY_KIND = "connect-proxy"


@dataclass(frozen=True)
class NodeService:
    id: str
    service: str
    kind: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    tagged_addresses: dict[str, ServiceAddress] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    port: int = 0
    weights: Weights = field(default_factory=Weights)
    enable_tag_override: bool = False
    proxy: dict[str, Any] = field(default_factory=dict)
    connect: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def is_same(self, other: NodeService) -> bool:
        return _fields_equal(self, other, _compared_fields(NodeService))


@dataclass(frozen=True)
class HealthCheck:
    node: str
    check_id: str
    name: str = ""
    status: str = STATUS_CRITICAL
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    interval: str = ""
    timeout: str = ""
    # TTL checks (type "ttl"): the leader marks the check critical when no update arrived
    # for `ttl`; `status_updated_at` (unix seconds, from the command) is when it was last set.
    ttl: str = ""
    status_updated_at: float = 0.0
    definition: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def is_same(self, other: HealthCheck) -> bool:
        return self.node.lower() == other.node.lower() and _fields_equal(
            self, other, _compared_fields(HealthCheck, ("node", "status_updated_at"))
        )


@dataclass(frozen=True)
class CheckServiceNode:
    """A service instance with its node and all checks that apply to it (node + service checks)."""

    node: Node
    service: NodeService
    checks: tuple[HealthCheck, ...] = ()

    def is_same(self, other: CheckServiceNode) -> bool:
        return (
            self.node.is_same(other.node)
            and self.service.is_same(other.service)
            and len(self.checks) == len(other.checks)
            and all(a.is_same(b) for a, b in zip(self.checks, other.checks, strict=True))
        )

    def is_wan_federation_gateway(self) -> bool:
        return self.service.meta.get(META_WAN_FEDERATION) == "1"

    def is_critical(self) -> bool:
        return any(c.status == STATUS_CRITICAL for c in self.checks)

    def best_address(self, wan: bool) -> tuple[str, int]:
        """Address to dial this gateway on, following Consul's BestAddress rules (§1.2)."""
        svc = self.service
        port = svc.port
        address = ""
        if wan:
            tagged = svc.tagged_addresses.get("wan")
            if tagged is not None and tagged.address:
                address = tagged.address
                if tagged.port:
                    port = tagged.port
            else:
                address = svc.address
            if not address:
                address = self.node.tagged_addresses.get("wan", "") or self.node.address
        else:
            address = svc.address or self.node.address
        return address, port


@dataclass(frozen=True)
class FederationState:
    datacenter: str
    mesh_gateways: tuple[CheckServiceNode, ...] = ()
    updated_at: str = ""  # RFC 3339 UTC, set by the writer (never by apply)
    primary_modify_index: int = 0
    create_index: int = 0
    modify_index: int = 0

    def is_same(self, other: FederationState) -> bool:
        return (
            self.datacenter == other.datacenter
            and len(self.mesh_gateways) == len(other.mesh_gateways)
            and all(a.is_same(b) for a, b in zip(self.mesh_gateways, other.mesh_gateways, strict=True))
        )


@dataclass(frozen=True)
class ServerInfo:
    """Membership metadata one meshfed server publishes about itself through Raft."""

    node: str
    datacenter: str
    raft_address: str  # host:port
    rpc_address: str  # host:port (gRPC)
    http_address: str  # host:port
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True)
class ConfigEntry:
    """A config entry (proxy-defaults, service-defaults, service-intentions, exported-services,
    mesh): `body` is the canonical entry in Consul's CamelCase (see fsm/config_entries.py),
    without indexes; treat it as immutable. `hash` is its content hash (replication diff)."""

    kind: str
    name: str
    body: dict[str, Any] = field(default_factory=dict)
    hash: int = 0
    create_index: int = 0
    modify_index: int = 0

    @classmethod
    def of(cls, body: dict[str, Any]) -> ConfigEntry:
        """The record of a canonical entry, keyed by its own Kind and Name and stamped with its
        content hash: the one way writers (endpoints, replication) build it, so the hash a
        secondary compares with the primary's is always computed the same way."""
        return cls(kind=body["Kind"], name=body["Name"], body=body, hash=content_hash(body))

    @property
    def key(self) -> tuple[str, str]:
        return config_entry_key(self.kind, self.name)


@dataclass(frozen=True)
class CAState:
    """The Connect CA: cluster id, configuration, and roots. Roots are dicts in Consul's JSON
    shape plus private fields (`SigningKey`, `RotatedOutAt`) that are never served."""

    cluster_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    roots: tuple[dict[str, Any], ...] = ()
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True)
class AutopilotConfig:
    """Consul's autopilot configuration (`/v1/operator/autopilot/configuration`), replicated so
    every server's leader routine reads the same settings. Defaults are Consul's except
    `cleanup_dead_servers`, off: a removed meshfed server does not rejoin by itself when it comes
    back (Consul's does, through serf), so removing one that is only down for maintenance would
    need an operator to wipe and re-join it."""

    cleanup_dead_servers: bool = False
    last_contact_threshold: float = 0.2  # seconds
    max_trailing_logs: int = 250
    min_quorum: int = 0
    server_stabilization_time: float = 10.0  # seconds
    create_index: int = 0
    modify_index: int = 0


@functools.cache
def _compared_fields(cls: type, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The fields `is_same` compares: all but the raft indexes (and `skip`)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("create_index", "modify_index", *skip))


def _fields_equal(a: Any, b: Any, names: tuple[str, ...]) -> bool:
    """Field-by-field equality. Same answer as comparing `dataclasses.asdict` copies (nested
    records compare by their fields either way) without deep-copying both records: apply calls
    this for every registration, on every server."""
    return all(getattr(a, name) == getattr(b, name) for name in names)


# ---- wire form (msgpack-able dicts, snake_case keys) --------------------------------------------


_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


@functools.cache
def _wire_fields(cls: type) -> tuple[str, ...] | None:
    """A record class's field names, or None for anything else. A memo of class metadata (fixed
    at import), not state: `to_wire` runs over every record of a snapshot on the Raft thread, and
    `dataclasses.fields` per call was most of that time (2 s for 1,000 DCs of gateways)."""
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return None


def to_wire(record: Any) -> Any:
    """Convert a record (or nested structure of records) to plain msgpack-able data."""
    cls = type(record)
    if cls in _SCALARS:
        return record
    names = _wire_fields(cls)
    if names is not None:
        return {name: to_wire(getattr(record, name)) for name in names}
    if isinstance(record, (list, tuple)):
        return [to_wire(item) for item in record]
    if isinstance(record, dict):
        return {key: to_wire(value) for key, value in record.items()}
    return record


@functools.cache
def _field_set(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _from_fields(cls: type, data: dict[str, Any], converters: dict[str, Any]) -> Any:
    names = _field_set(cls)  # per call, `dataclasses.fields` was a quarter of decoding a registration
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            continue  # fields added by a newer version are ignored, not fatal
        convert = converters.get(key)
        kwargs[key] = convert(value) if convert is not None and value is not None else value
    return cls(**kwargs)


def node_from_wire(data: dict[str, Any]) -> Node:
    return _from_fields(Node, data, {"tagged_addresses": _frozen_map, "meta": _frozen_map})


def service_from_wire(data: dict[str, Any]) -> NodeService:
    return _from_fields(
        NodeService,
        data,
        {
            "tags": tuple,
            "tagged_addresses": lambda m: {k: ServiceAddress(**v) for k, v in m.items()},
            "meta": _frozen_map,
            "weights": lambda w: Weights(**w),
            "proxy": _frozen_map,
            "connect": _frozen_map,
        },
    )


def check_from_wire(data: dict[str, Any]) -> HealthCheck:
    return _from_fields(HealthCheck, data, {"service_tags": tuple, "definition": _frozen_map})


def csn_from_wire(data: dict[str, Any]) -> CheckServiceNode:
    return CheckServiceNode(
        node=node_from_wire(data["node"]),
        service=service_from_wire(data["service"]),
        checks=tuple(check_from_wire(c) for c in data.get("checks") or ()),
    )


def federation_state_from_wire(data: dict[str, Any]) -> FederationState:
    return _from_fields(
        FederationState,
        data,
        {"mesh_gateways": lambda gws: tuple(csn_from_wire(g) for g in gws)},
    )


def server_info_from_wire(data: dict[str, Any]) -> ServerInfo:
    return _from_fields(ServerInfo, data, {})


def config_entry_from_wire(data: dict[str, Any]) -> ConfigEntry:
    return _from_fields(ConfigEntry, data, {"body": _frozen_map})


def autopilot_config_from_wire(data: dict[str, Any]) -> AutopilotConfig:
    return _from_fields(AutopilotConfig, data, {})


def ca_state_from_wire(data: dict[str, Any]) -> CAState:
    return _from_fields(CAState, data, {"config": _frozen_map, "roots": lambda roots: tuple(dict(r) for r in roots)})

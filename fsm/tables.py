"""The tables behind a `StateStore` (fsm/state.py), and how they are rebuilt from a snapshot.

`Tables` is the mutable data: records keyed by their lower-cased names, and one index per table.
A store swaps it as a whole on restore; `tables_from_export` builds it from a snapshot's exported
data and refuses anything malformed (orphan rows, wrong types, negative indexes) with a
ValueError, so a bad snapshot never half-replaces a store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from meshfed.fsm.acl.store import ACL_TABLES, ACLTables, acl_load
from meshfed.fsm.federation_changes import FederationChanges
from meshfed.fsm.peering.store import PEERING_TABLES, PeeringTables, peering_load
from meshfed.fsm.records import (
    AutopilotConfig,
    CAState,
    CheckServiceNode,
    ConfigEntry,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
    autopilot_config_from_wire,
    ca_state_from_wire,
    check_from_wire,
    config_entry_from_wire,
    federation_state_from_wire,
    node_from_wire,
    server_info_from_wire,
    service_from_wire,
)
from meshfed.fsm.type_checks import check_record_types

TABLES = ("nodes", "services", "checks", "federation_states", "servers", "config_entries", "connect_ca", "autopilot",
          *ACL_TABLES,
          *PEERING_TABLES)


class Tables:
    """The mutable data behind a store; swapped as a whole on snapshot restore."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}  # lower(node) -> Node
        self.services: dict[str, dict[str, NodeService]] = {}  # lower(node) -> service id -> service
        # kind -> {(lower(node), service id)} for instances with a kind (gateways, proxies): the
        # leader's anti-entropy reads the mesh gateways on every catalog change, and a scan of
        # every instance made each write cost O(catalog). Kept by set/drop_service only.
        self.by_kind: dict[str, set[tuple[str, str]]] = {}
        self.checks: dict[str, dict[str, HealthCheck]] = {}  # lower(node) -> check id -> check
        self.federation_states: dict[str, FederationState] = {}  # lower(datacenter) -> state
        # What changed after an index, for FederationState/ListSince; not snapshotted (a restore
        # resets its horizon, see fsm/federation_changes.py).
        self.federation_changes = FederationChanges()
        self.servers: dict[str, ServerInfo] = {}  # lower(node) -> server
        self.config_entries: dict[tuple[str, str], ConfigEntry] = {}  # (lower kind, lower name) -> entry
        self.ca: CAState | None = None
        self.autopilot: AutopilotConfig | None = None  # None: Consul's defaults, never set
        self.acl = ACLTables()
        self.peering = PeeringTables()
        self.table_index: dict[str, int] = dict.fromkeys(TABLES, 0)

    def max_index(self, tables: tuple[str, ...]) -> int:
        return max(self.table_index[name] for name in tables)

    def node_checks(self, node_key: str) -> list[HealthCheck]:
        return [c for c in self.checks.get(node_key, {}).values() if not c.service_id]

    def check_service_node(self, node_key: str, service: NodeService) -> CheckServiceNode:
        own = [c for c in self.checks.get(node_key, {}).values() if c.service_id == service.id]
        checks = sorted(self.node_checks(node_key) + own, key=lambda c: c.check_id)
        return CheckServiceNode(node=self.nodes[node_key], service=service, checks=tuple(checks))

    def set_service(self, node_key: str, service: NodeService) -> None:
        services = self.services.setdefault(node_key, {})
        old = services.get(service.id)
        if old is not None and old.kind != service.kind:
            self._unindex(node_key, old)
        services[service.id] = service
        if service.kind:
            self.by_kind.setdefault(service.kind, set()).add((node_key, service.id))

    def drop_service(self, node_key: str, service_id: str) -> NodeService | None:
        services = self.services.get(node_key, {})
        old = services.pop(service_id, None)
        if old is not None:
            self._unindex(node_key, old)
            if not services:
                del self.services[node_key]
        return old

    def drop_services_of(self, node_key: str) -> bool:
        services = self.services.pop(node_key, None)
        for old in (services or {}).values():
            self._unindex(node_key, old)
        return bool(services)

    def _unindex(self, node_key: str, service: NodeService) -> None:
        keys = self.by_kind.get(service.kind)
        if keys is not None:
            keys.discard((node_key, service.id))
            if not keys:
                del self.by_kind[service.kind]

    def instances_of_kind(self, kind: str) -> list[tuple[str, NodeService]]:
        """Instances of one kind, in `instances()` order, without scanning the others."""
        return [(node_key, self.services[node_key][service_id])
                for node_key, service_id in sorted(self.by_kind.get(kind, ()))]

    def instances(self) -> Iterator[tuple[str, NodeService]]:
        """Every service instance as (node key, service), by node name then service id."""
        for node_key in sorted(self.services):
            services = self.services[node_key]
            for service_id in sorted(services):
                yield node_key, services[service_id]


# ---- restore from exported data -------------------------------------------------------------


def _list_of(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"snapshot table {key!r} must be a list, got {type(value).__name__}")
    return value


def _typed(record: Any, cls: type) -> Any:
    check_record_types(record, cls, cls.__name__)  # CommandError is a ValueError
    return record


def _require_node(tables: Tables, node_key: Any, what: str) -> None:
    # Reads join instances to their node; an orphan row would make every such read fail.
    if not isinstance(node_key, str) or node_key not in tables.nodes:
        raise ValueError(f"snapshot has {what} on node {node_key!r}, which is not in the nodes table")


def tables_from_export(data: dict[str, Any]) -> Tables:
    if not isinstance(data, dict):
        raise ValueError(f"snapshot tables must be a map, got {type(data).__name__}")
    tables = Tables()
    try:
        for wire in _list_of(data, "nodes"):
            node = _typed(node_from_wire(wire), Node)
            tables.nodes[node.node.lower()] = node
        for node_key, wire in _list_of(data, "services"):
            service = _typed(service_from_wire(wire), NodeService)
            _require_node(tables, node_key, f"service {service.id!r}")
            tables.set_service(node_key, service)
        for wire in _list_of(data, "checks"):
            check = _typed(check_from_wire(wire), HealthCheck)
            _require_node(tables, check.node.lower(), f"check {check.check_id!r}")
            tables.checks.setdefault(check.node.lower(), {})[check.check_id] = check
        for wire in _list_of(data, "federation_states"):
            state = _typed(federation_state_from_wire(wire), FederationState)
            tables.federation_states[state.datacenter.lower()] = state
        for wire in _list_of(data, "servers"):
            server = _typed(server_info_from_wire(wire), ServerInfo)
            tables.servers[server.node.lower()] = server
        for wire in _list_of(data, "config_entries"):
            entry = _typed(config_entry_from_wire(wire), ConfigEntry)
            tables.config_entries[entry.key] = entry
        for wire in _list_of(data, "connect_ca")[:1]:
            tables.ca = _typed(ca_state_from_wire(wire), CAState)
        for wire in _list_of(data, "autopilot")[:1]:
            tables.autopilot = _typed(autopilot_config_from_wire(wire), AutopilotConfig)
        tables.acl = acl_load(data, _typed)
        tables.peering = peering_load(data, _typed)
        saved_index = data.get("table_index", {})
        for table in TABLES:
            value = saved_index.get(table, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"snapshot index of table {table!r} is {value!r}, want an integer >= 0")
            tables.table_index[table] = value
    except ValueError:
        raise
    except Exception as exc:  # a malformed record: KeyError, TypeError, AttributeError, ...
        raise ValueError(f"malformed snapshot record: {type(exc).__name__}: {exc}") from exc
    _raise_indexes_to_rows(tables)
    # The change log is not in the snapshot: nothing at or before the restored index is answerable.
    tables.federation_changes.reset(tables.table_index["federation_states"])
    return tables


def _raise_indexes_to_rows(tables: Tables) -> None:
    """A table index is at least the modify index of every row in it (reference §2.6), so a
    hand-edited or older snapshot can never make a blocking query miss a restored row."""
    rows: dict[str, list[Any]] = {
        "nodes": list(tables.nodes.values()),
        "services": [s for services in tables.services.values() for s in services.values()],
        "checks": [c for checks in tables.checks.values() for c in checks.values()],
        "federation_states": list(tables.federation_states.values()),
        "servers": list(tables.servers.values()),
        "config_entries": list(tables.config_entries.values()),
        "connect_ca": [tables.ca] if tables.ca is not None else [],
        "autopilot": [tables.autopilot] if tables.autopilot is not None else [],
        **tables.acl.rows(),
        "peerings": tables.peering.rows()["peerings"],
        "peering_imports": tables.peering.rows()["peering_imports"],
        "peering_trust_bundles": tables.peering.rows()["peering_trust_bundles"],
    }
    for table, records in rows.items():
        for record in records:
            if record.modify_index > tables.table_index[table]:
                tables.table_index[table] = record.modify_index

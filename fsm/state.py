"""The state store: tables of immutable records, their change indexes, and consistent reads.

Two kinds of callers run concurrently:
- one writer, the state machine on PySyncObj's tick thread, through `StateStore.writer()`;
- many readers on the asyncio event loop, through the read methods below.

One `threading.Lock` guards everything. Records are frozen and replaced, never mutated, so a
reader only holds the lock while it collects references (and builds the small lists it returns).
The writer holds it for a whole log entry, not per command: otherwise a reader could see index N
with only part of entry N applied, answer a blocking query with index N, and then sleep through
the rest of entry N, whose changes carry the same index N. No callback ever runs under the lock.

Keys: node names, datacenters and server nodes are case-insensitive (dict keys are lower-cased,
records keep their original case); service names, service ids and check ids are case-sensitive,
as in Consul. Lookups scan the tables: meshfed's catalog holds servers and gateways (tens to
hundreds of instances), not a fleet, so secondary indexes would cost more than they save.

Every read returns `(index, value)` where index is the highest entry index that changed any table
the read depends on (0 when never changed; the HTTP layer turns 0 into 1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from meshfed.fsm.acl.store import ACLReads, acl_export
from meshfed.fsm.config_entries import config_entry_key
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.federation_changes import FederationStateDelta
from meshfed.fsm.peering.store import (
    PeeringReads,
    peering_export,
)
from meshfed.fsm.records import (
    CONNECT_PROXY_KIND,
    STATUS_PASSING,
    AutopilotConfig,
    CAState,
    CheckServiceNode,
    ConfigEntry,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
    to_wire,
)
from meshfed.fsm.store_writer import StoreWriter
from meshfed.fsm.tables import TABLES, Tables, tables_from_export


def _is_service(instance: NodeService, service: str) -> bool:
    return instance.service == service


def serves_connect(instance: NodeService, service: str) -> bool:
    """A sidecar whose destination is `service`, or `service` itself when it speaks Connect natively."""
    if instance.kind == CONNECT_PROXY_KIND:
        return lookup(instance.proxy, "DestinationServiceName") == service
    return instance.service == service and bool(lookup(instance.connect, "Native"))


def _has_tag(service: NodeService, tag: str | None) -> bool:
    # Consul filters service tags case-insensitively.
    return tag is None or tag.lower() in (t.lower() for t in service.tags)


class StateStore(ACLReads, PeeringReads):
    """Catalog, federation states, server membership, config, CA and ACLs, with per-table change
    indexes (the ACL reads come from fsm/acl/store.py)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables = Tables()
        # Bumped by every write and load, quiet ones included (a TTL heartbeat moves no table
        # index): equal versions mean equal contents, so a read's result may be reused while
        # the version stands (server/requests/shared_results.py).
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    # ---- reads ----------------------------------------------------------------------------------

    def index(self, *tables: str) -> int:
        """Highest index that changed any of `tables` (all tables when none are named)."""
        names = tables or TABLES
        unknown = [name for name in names if name not in TABLES]
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; known tables are {', '.join(TABLES)}")
        with self._lock:
            return self._tables.max_index(names)

    def federation_state_get(self, datacenter: str) -> tuple[int, FederationState | None]:
        with self._lock:
            t = self._tables
            return t.table_index["federation_states"], t.federation_states.get(datacenter.lower())

    def federation_state_list(self) -> tuple[int, list[FederationState]]:
        with self._lock:
            t = self._tables
            states = [t.federation_states[key] for key in sorted(t.federation_states)]
            return t.table_index["federation_states"], states

    def federation_state_changes(self, since: int) -> tuple[int, FederationStateDelta | None]:
        """The table index and what changed after `since` (None: the caller must resync in full;
        fsm/federation_changes.py says when). O(changes since), not O(table)."""
        with self._lock:
            t = self._tables
            table_index = t.table_index["federation_states"]
            changes = t.federation_changes.since(since, table_index)
            if changes is None:
                return table_index, None
            states = [t.federation_states[key] for key in changes.upserted]
            return table_index, FederationStateDelta(since, tuple(states), changes.deleted)

    def federation_state_mesh_gateways(self) -> tuple[int, dict[str, list[CheckServiceNode]]]:
        with self._lock:
            t = self._tables
            gateways = {
                state.datacenter: list(state.mesh_gateways)
                for key, state in sorted(t.federation_states.items())
                if state.mesh_gateways
            }
            return t.table_index["federation_states"], gateways

    def catalog_nodes(self) -> tuple[int, list[Node]]:
        with self._lock:
            t = self._tables
            return t.table_index["nodes"], [t.nodes[key] for key in sorted(t.nodes)]

    def catalog_node(self, node: str) -> tuple[int, Node | None, list[NodeService]]:
        key = node.lower()
        with self._lock:
            t = self._tables
            services = t.services.get(key, {})
            return (
                t.max_index(("nodes", "services")),
                t.nodes.get(key),
                [services[service_id] for service_id in sorted(services)],
            )

    def catalog_services(self) -> tuple[int, dict[str, list[str]]]:
        with self._lock:
            t = self._tables
            index = t.table_index["services"]
            tags: dict[str, set[str]] = {}
            for services in t.services.values():
                for service in services.values():
                    tags.setdefault(service.service, set()).update(service.tags)
        return index, {name: sorted(tags[name]) for name in sorted(tags)}

    def catalog_service_nodes(
        self, service: str, tag: str | None = None, connect: bool = False
    ) -> tuple[int, list[tuple[Node, NodeService]]]:
        matches = serves_connect if connect else _is_service
        with self._lock:
            t = self._tables
            found = [
                (t.nodes[node_key], instance)
                for node_key, instance in t.instances()
                if matches(instance, service) and _has_tag(instance, tag)
            ]
            return t.max_index(("nodes", "services")), found

    def health_service_nodes(
        self, service: str, passing_only: bool = False, tag: str | None = None, connect: bool = False
    ) -> tuple[int, list[CheckServiceNode]]:
        """Instances of `service` with node and service checks; `passing_only` drops any instance
        with a check that is not passing (so warning is dropped too, as in Consul). With `connect`,
        the instances that accept Connect traffic for it instead: its sidecar proxies and
        Connect-native instances (`/v1/health/connect/<service>`)."""
        matches = serves_connect if connect else _is_service
        with self._lock:
            t = self._tables
            found = [
                t.check_service_node(node_key, instance)
                for node_key, instance in t.instances()
                if matches(instance, service) and _has_tag(instance, tag)
            ]
            index = t.max_index(("nodes", "services", "checks"))
        if passing_only:
            found = [csn for csn in found if all(c.status == STATUS_PASSING for c in csn.checks)]
        return index, found

    def check_service_nodes_by_kind(self, kind: str) -> tuple[int, list[CheckServiceNode]]:
        """All instances of a service kind (e.g. `mesh-gateway`), by node name then service id."""
        with self._lock:
            t = self._tables
            found = [t.check_service_node(node_key, instance) for node_key, instance in t.instances_of_kind(kind)]
            return t.max_index(("nodes", "services", "checks")), found

    def checks_of_type(self, check_type: str) -> list[HealthCheck]:
        """Checks of one type (the TTL reaper asks for "ttl"), by node name then check id."""
        with self._lock:
            t = self._tables
            return [
                checks[check_id]
                for node_key, checks in sorted(t.checks.items())
                for check_id in sorted(checks)
                if checks[check_id].type == check_type
            ]

    def catalog_instances(self) -> tuple[int, list[tuple[Node, NodeService]]]:
        """Every service instance with its node (`/v1/catalog/services?filter=` selects on these)."""
        with self._lock:
            t = self._tables
            found = [(t.nodes[node_key], instance) for node_key, instance in t.instances()]
            return t.max_index(("nodes", "services")), found

    def health_checks(
        self, *, node: str | None = None, service: str | None = None, status: str | None = None
    ) -> tuple[int, list[HealthCheck]]:
        """Checks by node name then check id, narrowed to one node (case-insensitive), one
        service name, or one status (/v1/health/node, /checks, /state); the checks table's index."""
        with self._lock:
            t = self._tables
            keys = [node.lower()] if node is not None else sorted(t.checks)
            found = [
                check
                for key in keys
                for _, check in sorted(t.checks.get(key, {}).items())
                if (service is None or check.service_name == service) and (status is None or check.status == status)
            ]
            return t.table_index["checks"], found

    def get_check(self, node: str, check_id: str) -> HealthCheck | None:
        with self._lock:
            return self._tables.checks.get(node.lower(), {}).get(check_id)

    def servers(self) -> tuple[int, list[ServerInfo]]:
        with self._lock:
            t = self._tables
            return t.table_index["servers"], [t.servers[key] for key in sorted(t.servers)]

    def config_entry_get(self, kind: str, name: str) -> tuple[int, ConfigEntry | None]:
        """Kind and name are case-insensitive (connect-data §B.3)."""
        with self._lock:
            t = self._tables
            return t.table_index["config_entries"], t.config_entries.get(config_entry_key(kind, name))

    def config_entry_list(self, kind: str | None = None) -> tuple[int, list[ConfigEntry]]:
        """Sorted by (kind, name); all kinds when `kind` is None."""
        with self._lock:
            t = self._tables
            keys = sorted(k for k in t.config_entries if kind is None or k[0] == kind.lower())
            return t.table_index["config_entries"], [t.config_entries[k] for k in keys]

    def ca_state(self) -> tuple[int, CAState | None]:
        with self._lock:
            return self._tables.table_index["connect_ca"], self._tables.ca

    def autopilot_config(self) -> tuple[int, AutopilotConfig]:
        """The stored configuration, or Consul's defaults (index 0) when none was ever set."""
        with self._lock:
            return self._tables.table_index["autopilot"], self._tables.autopilot or AutopilotConfig()

    # ---- writes (state machine only) ------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[StoreWriter]:
        """Exclusive write access for one log entry; readers wait until it is fully applied."""
        with self._lock:
            try:
                yield StoreWriter(self._tables)
            finally:
                self._version += 1

    # ---- snapshot -------------------------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """All tables as plain msgpack-able data, in a canonical (sorted) order."""
        return self.capture()()

    def capture(self) -> Callable[[], dict[str, Any]]:
        """`export()` in two steps: pick the records now, under the lock (cheap: references), and
        convert them later, from any thread, with no lock. The conversion is most of the cost (a
        second for 1,000 datacenters of gateways); the Raft thread takes a snapshot, and it must
        not stop sending heartbeats for that long. Records are immutable, so what was picked
        stays exactly the state at the moment of the capture."""
        with self._lock:
            t = self._tables
            table_index = dict(t.table_index)
            nodes = [t.nodes[key] for key in sorted(t.nodes)]
            services = [(node_key, service) for node_key, service in t.instances()]
            checks = [
                checks[check_id] for _, checks in sorted(t.checks.items()) for check_id in sorted(checks)
            ]
            states = [t.federation_states[key] for key in sorted(t.federation_states)]
            servers = [t.servers[key] for key in sorted(t.servers)]
            entries = [t.config_entries[key] for key in sorted(t.config_entries)]
            ca = t.ca
            autopilot = t.autopilot
            acl = acl_export(t.acl, to_wire)  # small tables; converted under the lock for brevity
            peering = peering_export(t.peering, to_wire)

        def render() -> dict[str, Any]:
            return {
                "table_index": table_index,
                "nodes": [to_wire(node) for node in nodes],
                "services": [[node_key, to_wire(service)] for node_key, service in services],
                "checks": [to_wire(check) for check in checks],
                "federation_states": [to_wire(state) for state in states],
                "servers": [to_wire(server) for server in servers],
                "config_entries": [to_wire(entry) for entry in entries],
                "connect_ca": [to_wire(ca)] if ca is not None else [],
                "autopilot": [to_wire(autopilot)] if autopilot is not None else [],
                **acl,
                **peering,
            }

        return render

    def load(self, data: dict[str, Any]) -> None:
        """Replace every table with exported data. Raises ValueError and then changes nothing."""
        tables = tables_from_export(data)
        with self._lock:
            self._tables = tables
            self._version += 1

"""The state store's write side: lookups and mutations for one log entry, used only by the state
machine, under the store's lock (`StateStore.writer()` in fsm/state.py, which states the locking
invariant). Kept apart from the reads so each side fits in one reading."""

from __future__ import annotations

from typing import Any

from meshfed.fsm.acl.store import ACLWrites
from meshfed.fsm.config_entries import config_entry_key
from meshfed.fsm.peering.store import PeeringWrites
from meshfed.fsm.records import (
    AutopilotConfig,
    CAState,
    ConfigEntry,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
)
from meshfed.fsm.tables import TABLES, Tables, tables_from_export


class StoreWriter(ACLWrites, PeeringWrites):
    """Lookups and mutations for one log entry, used under the store's lock.

    `put_*` store a record exactly as given (the caller has set its indexes) and raise its table's
    index to `index`; `changed` collects the tables that moved, for subscribers.
    """

    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self.changed: set[str] = set()

    def _bump(self, table: str, index: int) -> None:
        self._t.table_index[table] = max(self._t.table_index[table], index)
        self.changed.add(table)

    def replace_all(self, data: dict[str, Any], index: int) -> None:
        """A backup restore inside a log entry: every table becomes `data`'s (records keep their own
        indexes) and every table index becomes `index`, which the caller puts above every index
        either state ever served, so blocking queries all wake and X-Consul-Index never goes back.
        Raises ValueError and then changes nothing."""
        tables = tables_from_export(data)
        tables.table_index = dict.fromkeys(TABLES, index)
        tables.federation_changes.reset(index)
        vars(self._t).update(vars(tables))  # in place: the store and this writer share `_t`
        self.changed.update(TABLES)

    # lookups
    def node(self, name: str) -> Node | None:
        return self._t.nodes.get(name.lower())

    def services_of(self, node: str) -> dict[str, NodeService]:
        return dict(self._t.services.get(node.lower(), {}))

    def service(self, node: str, service_id: str) -> NodeService | None:
        return self._t.services.get(node.lower(), {}).get(service_id)

    def checks_of(self, node: str) -> dict[str, HealthCheck]:
        return dict(self._t.checks.get(node.lower(), {}))

    def check(self, node: str, check_id: str) -> HealthCheck | None:
        return self._t.checks.get(node.lower(), {}).get(check_id)

    def federation_state(self, datacenter: str) -> FederationState | None:
        return self._t.federation_states.get(datacenter.lower())

    def server(self, node: str) -> ServerInfo | None:
        return self._t.servers.get(node.lower())

    # mutations
    def put_node(self, node: Node, index: int) -> None:
        self._t.nodes[node.node.lower()] = node
        self._bump("nodes", index)

    def put_service(self, node: str, service: NodeService, index: int) -> None:
        self._t.set_service(node.lower(), service)
        self._bump("services", index)

    def put_check(self, check: HealthCheck, index: int) -> None:
        self._t.checks.setdefault(check.node.lower(), {})[check.check_id] = check
        self._bump("checks", index)

    def put_check_quietly(self, check: HealthCheck) -> None:
        """Replace a check without moving any index (a TTL heartbeat that changed nothing a
        reader can watch for; waking every blocking query on each heartbeat would be a storm)."""
        self._t.checks.setdefault(check.node.lower(), {})[check.check_id] = check

    def delete_node(self, node: str, index: int) -> None:
        """Remove a node with its services and checks; a missing node changes nothing."""
        key = node.lower()
        if self._t.nodes.pop(key, None) is not None:
            self._bump("nodes", index)
        if self._t.drop_services_of(key):
            self._bump("services", index)
        if self._t.checks.pop(key, None):
            self._bump("checks", index)

    def delete_service(self, node: str, service_id: str, index: int) -> None:
        """Remove a service instance and its checks; a missing service changes nothing."""
        key = node.lower()
        if self._t.drop_service(key, service_id) is None:
            return
        self._bump("services", index)
        checks = self._t.checks.get(key, {})
        for check_id in [cid for cid, check in checks.items() if check.service_id == service_id]:
            self.delete_check(node, check_id, index)

    def delete_check(self, node: str, check_id: str, index: int) -> None:
        key = node.lower()
        checks = self._t.checks.get(key, {})
        if checks.pop(check_id, None) is None:
            return
        if not checks:
            del self._t.checks[key]
        self._bump("checks", index)

    def put_federation_state(self, state: FederationState, index: int) -> None:
        key = state.datacenter.lower()
        self._t.federation_states[key] = state
        self._bump("federation_states", index)
        self._t.federation_changes.upserted(key, index)

    def delete_federation_state(self, datacenter: str, index: int) -> None:
        key = datacenter.lower()
        if self._t.federation_states.pop(key, None) is not None:
            self._bump("federation_states", index)
            self._t.federation_changes.deleted(key, index)

    def put_server(self, server: ServerInfo, index: int) -> None:
        self._t.servers[server.node.lower()] = server
        self._bump("servers", index)

    def config_entry(self, kind: str, name: str) -> ConfigEntry | None:
        return self._t.config_entries.get(config_entry_key(kind, name))

    def put_config_entry(self, entry: ConfigEntry, index: int) -> None:
        self._t.config_entries[entry.key] = entry
        self._bump("config_entries", index)

    def delete_config_entry(self, kind: str, name: str, index: int) -> None:
        if self._t.config_entries.pop(config_entry_key(kind, name), None) is not None:
            self._bump("config_entries", index)

    def ca(self) -> CAState | None:
        return self._t.ca

    def put_ca(self, state: CAState, index: int) -> None:
        self._t.ca = state
        self._bump("connect_ca", index)

    def autopilot(self) -> AutopilotConfig | None:
        return self._t.autopilot

    def put_autopilot(self, config: AutopilotConfig, index: int) -> None:
        self._t.autopilot = config
        self._bump("autopilot", index)

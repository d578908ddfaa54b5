"""The peering tables of the state store, taken by StateStore/StoreWriter as mixins like the ACL
tables (fsm/acl/store.py): they share the store's lock, table indexes and snapshot."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from meshfed.fsm.peering.records import (
    ImportedService,
    Peering,
    PeeringSecrets,
    PeeringTrustBundle,
    bundle_from_wire,
    imported_from_wire,
    peering_from_wire,
    secrets_from_wire,
)

PEERING_TABLES = ("peerings", "peering_secrets", "peering_imports", "peering_trust_bundles")


class PeeringTables:
    def __init__(self) -> None:
        self.peerings: dict[str, Peering] = {}  # lower(name) -> row
        self.secrets: dict[str, PeeringSecrets] = {}  # peering id -> secrets
        self.imports: dict[str, dict[str, ImportedService]] = {}  # lower(peer name) -> service -> instances
        self.bundles: dict[str, PeeringTrustBundle] = {}  # lower(peer name) -> what the peer said of its mesh

    def by_id(self, peering_id: str) -> Peering | None:
        return next((p for p in self.peerings.values() if p.id == peering_id), None)

    def rows(self) -> dict[str, list[Any]]:
        return {
            "peerings": [self.peerings[k] for k in sorted(self.peerings)],
            "peering_secrets": [self.secrets[k] for k in sorted(self.secrets)],
            "peering_imports": [s for k in sorted(self.imports) for _, s in sorted(self.imports[k].items())],
            "peering_trust_bundles": [self.bundles[k] for k in sorted(self.bundles)],
        }


class PeeringReads:
    """Reads; `self._lock` and `self._tables` come from StateStore."""

    _lock: threading.Lock
    _tables: Any

    def peering_get(self, name: str) -> tuple[int, Peering | None]:
        with self._lock:
            return self._tables.table_index["peerings"], self._tables.peering.peerings.get(name.lower())

    def peering_by_id(self, peering_id: str) -> Peering | None:
        with self._lock:
            return self._tables.peering.by_id(peering_id)

    def peering_list(self) -> tuple[int, list[Peering]]:
        with self._lock:
            p = self._tables.peering.peerings
            return self._tables.table_index["peerings"], [p[k] for k in sorted(p)]

    def peering_secrets(self, peering_id: str) -> PeeringSecrets | None:
        with self._lock:
            return self._tables.peering.secrets.get(peering_id)

    def peering_imported(self, peer_name: str, service: str | None = None) -> tuple[int, list[ImportedService]]:
        """What `peer_name` exports to us (one service, or all by name); unknown peer -> []."""
        with self._lock:
            services = self._tables.peering.imports.get(peer_name.lower(), {})
            found = [services[k] for k in sorted(services) if service is None or k == service]
            return self._tables.table_index["peering_imports"], found

    def peering_trust_bundle(self, peer_name: str) -> PeeringTrustBundle | None:
        with self._lock:
            return self._tables.peering.bundles.get(peer_name.lower())

    def peering_trust_bundles(self) -> tuple[int, list[PeeringTrustBundle]]:
        """Every stored bundle, by peer name; only peerings that are not DELETING/TERMINATED
        keep one (their apply drops it)."""
        with self._lock:
            b = self._tables.peering.bundles
            return self._tables.table_index["peering_trust_bundles"], [b[k] for k in sorted(b)]


class PeeringWrites:
    """Mutations for one log entry; `_t` and `_bump` come from StoreWriter."""

    _t: Any
    _bump: Callable[[str, int], None]

    @property
    def _peering(self) -> PeeringTables:
        return self._t.peering

    def peering(self, name: str) -> Peering | None:
        return self._peering.peerings.get(name.lower())

    def peering_by_id(self, peering_id: str) -> Peering | None:
        return self._peering.by_id(peering_id)

    def peering_secret_row(self, peering_id: str) -> PeeringSecrets | None:
        return self._peering.secrets.get(peering_id)

    def put_peering(self, peering: Peering, index: int) -> None:
        self._peering.peerings[peering.name.lower()] = peering
        self._bump("peerings", index)

    def put_peering_secrets(self, secrets: PeeringSecrets, index: int) -> None:
        self._peering.secrets[secrets.peering_id] = secrets
        self._bump("peering_secrets", index)

    def delete_peering(self, name: str, index: int) -> None:
        row = self._peering.peerings.pop(name.lower(), None)
        if row is None:
            return
        self._bump("peerings", index)
        if self._peering.secrets.pop(row.id, None) is not None:
            self._bump("peering_secrets", index)
        self.replace_peering_imports(name, {}, index)
        self.drop_peering_trust_bundle(name, index)

    def put_peering_trust_bundle(self, bundle: PeeringTrustBundle, index: int) -> None:
        self._peering.bundles[bundle.peer_name.lower()] = bundle
        self._bump("peering_trust_bundles", index)

    def drop_peering_trust_bundle(self, peer_name: str, index: int) -> None:
        if self._peering.bundles.pop(peer_name.lower(), None) is not None:
            self._bump("peering_trust_bundles", index)

    def replace_peering_imports(self, peer_name: str, services: dict[str, ImportedService], index: int) -> None:
        key = peer_name.lower()
        if self._peering.imports.get(key, {}) == services:
            return
        if services:
            self._peering.imports[key] = services
        else:
            self._peering.imports.pop(key, None)
        self._bump("peering_imports", index)


_FROM_WIRE = {"peerings": peering_from_wire, "peering_secrets": secrets_from_wire, "peering_imports": imported_from_wire,
              "peering_trust_bundles": bundle_from_wire}
_RECORD = {"peerings": Peering, "peering_secrets": PeeringSecrets, "peering_imports": ImportedService,
           "peering_trust_bundles": PeeringTrustBundle}


def peering_export(tables: PeeringTables, to_wire: Callable[[Any], Any]) -> dict[str, Any]:
    return {table: [to_wire(row) for row in rows] for table, rows in tables.rows().items()}


def peering_load(data: dict[str, Any], typed: Callable[[Any, type], Any]) -> PeeringTables:
    """Tables from `peering_export` output; a snapshot from before peering has none."""
    tables = PeeringTables()
    for table, from_wire in _FROM_WIRE.items():
        rows = data.get(table) or []
        if not isinstance(rows, list):
            raise ValueError(f"snapshot table {table!r} must be a list, got {type(rows).__name__}")
        for wire in rows:
            record = typed(from_wire(wire), _RECORD[table])
            if table == "peerings":
                tables.peerings[record.name.lower()] = record
            elif table == "peering_secrets":
                tables.secrets[record.peering_id] = record
            elif table == "peering_trust_bundles":
                tables.bundles[record.peer_name.lower()] = record
            else:
                tables.imports.setdefault(record.peer_name.lower(), {})[record.service] = record
    return tables

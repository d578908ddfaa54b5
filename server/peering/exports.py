"""Which local services an `exported-services` entry offers to one peer (reference peering.md
§1.3). `exported_to` decides and is pure; the two readers below take its inputs from the state
store (the entry, the catalog) and the instances the stream sends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshfed.fsm.config_entries.schema import KIND_EXPORTED_SERVICES
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.records import to_wire
from meshfed.fsm.state import StateStore

WILDCARD = "*"
EXPORTED_SERVICES_NAME = "default"


def exported_to(entry_body: Mapping[str, Any] | None, peer_name: str, local_services: Iterable[str]) -> list[str]:
    """Sorted names of the local services `entry_body` exports to `peer_name` (the acceptor's
    name for the peering); `Name = "*"` exports every local service."""
    if not entry_body:
        return []
    local = sorted(set(local_services))
    chosen: set[str] = set()
    for service in lookup(entry_body, "Services") or []:
        consumers = lookup(service, "Consumers") or []
        if not any((lookup(c, "Peer") or "").lower() == peer_name.lower() for c in consumers):
            continue
        name = lookup(service, "Name") or ""
        if name == WILDCARD:
            chosen.update(local)
        elif name:
            chosen.add(name)
    return sorted(chosen)


def exported_service_names(state: StateStore, peer_name: str) -> list[str]:
    """What the local `exported-services` entry offers to the peering named `peer_name` here."""
    _, entry = state.config_entry_get(KIND_EXPORTED_SERVICES, EXPORTED_SERVICES_NAME)
    _, services = state.catalog_services()
    return exported_to(entry.body if entry is not None else None, peer_name, services)


def exported_instances(state: StateStore, peer_name: str) -> dict[str, list[Any]]:
    """Every exported service's instances (healthy or not), as the stream sends them."""
    return {name: [to_wire(csn) for csn in state.health_service_nodes(name)[1]]
            for name in exported_service_names(state, peer_name)}

"""Which local services an `exported-services` entry offers to one peer (reference peering.md
§1.3). Pure: the acceptor's handler reads the entry and the catalog, this decides."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshfed.fsm.consul_formats.field_lookup import lookup

WILDCARD = "*"


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

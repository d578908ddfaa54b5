"""Silent filtering of list reads (reference/acl.md §5, summary 9): rows the token may not read are
dropped, and the caller learns only that something was (`X-Consul-Results-Filtered-By-ACLs: true`).

Each filter takes the decoded JSON answer of one route and returns `(kept, removed_any)`. They work
on the JSON Consul clients see, so they sit after the handler and need no change in the routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meshfed.fsm.acl import Access
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.server.acl.needs import Need, config_entry_read, granted, intention
from meshfed.server.acl.resolver import Identity

ResultFilter = Callable[[Identity, Any], tuple[Any, bool]]

# filter -> the named resources whose read permission is all it consults. A token that may read
# every name of each keeps the whole answer, so the filter need not run: with 1,000 DCs a gateway
# token's read of the mesh-gateway list spent ~80 ms decoding and checking 4,000 rows to drop none.
_READS: dict[Callable[..., Any], tuple[str, ...]] = {}


def reads(*resources: str) -> Callable[[ResultFilter], ResultFilter]:
    def mark(keep: ResultFilter) -> ResultFilter:
        _READS[keep] = resources
        return keep

    return mark


def keeps_everything(identity: Identity, keep: ResultFilter) -> bool:
    """True when `keep` cannot drop a row for want of permission: the token is management, or
    every permission the filter consults is read on every name. (A filter also drops rows without
    a name, which the servers' own answers never hold.) False for filters that consult more
    (config entries: a different need per kind)."""
    if identity.authorizer.management:
        return True
    resources = _READS.get(keep)
    return resources is not None and all(
        identity.authorizer.allowed_on_all(resource, Access.READ) for resource in resources)


def can_read(identity: Identity, resource: str, name: Any) -> bool:
    return isinstance(name, str) and granted(identity, Need(resource, Access.READ, name))


def keep_rows(rows: Any, allowed: Callable[[Mapping[str, Any]], bool]) -> tuple[Any, bool]:
    if not isinstance(rows, list):
        return rows, False
    kept = [row for row in rows if isinstance(row, Mapping) and allowed(row)]
    return kept, len(kept) != len(rows)


@reads("service")
def catalog_services(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`{service: tags}`: service:read on each name."""
    if not isinstance(answer, Mapping):
        return answer, False
    kept = {name: tags for name, tags in answer.items() if can_read(identity, "service", name)}
    return kept, len(kept) != len(answer)


@reads("service")
def agent_services(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`{id: AgentService}`: service:read on each service's name."""
    if not isinstance(answer, Mapping):
        return answer, False
    kept = {sid: s for sid, s in answer.items()
            if isinstance(s, Mapping) and can_read(identity, "service", lookup(s, "Service"))}
    return kept, len(kept) != len(answer)


@reads("service", "node")
def agent_checks(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`{id: AgentCheck}`, as Consul's agent filters it: service:read on a service's check,
    node:read on the node for a node-level check."""
    if not isinstance(answer, Mapping):
        return answer, False

    def allowed(row: Any) -> bool:
        if not isinstance(row, Mapping):
            return False
        service = lookup(row, "ServiceName")
        return can_read(identity, "service", service) if service else can_read(identity, "node", lookup(row, "Node"))

    kept = {cid: row for cid, row in answer.items() if allowed(row)}
    return kept, len(kept) != len(answer)


@reads("node")
def catalog_nodes(identity: Identity, answer: Any) -> tuple[Any, bool]:
    return keep_rows(answer, lambda row: can_read(identity, "node", lookup(row, "Node")))


@reads("node", "service")
def catalog_service_nodes(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """Flat rows (`Node`, `ServiceName`): node:read and service:read."""
    return keep_rows(answer, lambda row: can_read(identity, "node", lookup(row, "Node"))
                      and can_read(identity, "service", lookup(row, "ServiceName")))


def _csn_allowed(identity: Identity, row: Mapping[str, Any]) -> bool:
    node = lookup(row, "Node")
    service = lookup(row, "Service")
    node_name = lookup(node, "Node") if isinstance(node, Mapping) else None
    service_name = lookup(service, "Service") if isinstance(service, Mapping) else None
    return can_read(identity, "node", node_name) and can_read(identity, "service", service_name)


@reads("node", "service")
def health_service_nodes(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """CheckServiceNode rows (`Node.Node`, `Service.Service`): node:read and service:read."""
    return keep_rows(answer, lambda row: _csn_allowed(identity, row))


@reads("node", "service")
def mesh_gateways_by_datacenter(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`{dc: [CheckServiceNode]}` from /v1/internal/federation-states/mesh-gateways, and its
    meshfed delta (`?changes-since=`: `{"Resync": bool, "Changed": {dc: [...]}, "Deleted": [dc]}`),
    whose changed rows are filtered exactly as the full list's: a delta never shows a token a
    gateway that the full list would hide. The two shapes cannot be confused: a full list's values
    are all lists, a delta's `Resync` is a boolean."""
    if isinstance(answer, Mapping) and isinstance(answer.get("Resync"), bool):
        changed, removed = _gateways_by_datacenter(identity, answer.get("Changed"), keep_emptied=True)
        return ({**answer, "Changed": changed} if "Changed" in answer else answer), removed
    return _gateways_by_datacenter(identity, answer, keep_emptied=False)


def _gateways_by_datacenter(identity: Identity, answer: Any, keep_emptied: bool) -> tuple[Any, bool]:
    """A full list drops a DC the filter left without gateways, as Consul's ListMeshGateways does
    (it lists only DCs with gateways); a delta keeps it with `[]`, which tells a caller that saw
    gateways there that it may see none now."""
    if not isinstance(answer, Mapping):
        return answer, False
    kept: dict[str, Any] = {}
    removed = False
    for datacenter, rows in answer.items():
        visible, dropped = health_service_nodes(identity, rows)
        removed = removed or dropped
        if visible or keep_emptied or not dropped:
            kept[datacenter] = visible
    return kept, removed


@reads("intention")
def intentions(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """intention:read on each destination."""
    def allowed(row: Mapping[str, Any]) -> bool:
        destination = lookup(row, "DestinationName")
        return isinstance(destination, str) and all(
            granted(identity, need) for need in intention(destination, Access.READ))

    return keep_rows(answer, allowed)


def config_entries(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """The per-kind read need of each entry (§5's config entry table)."""
    def allowed(row: Mapping[str, Any]) -> bool:
        kind, name = lookup(row, "Kind"), lookup(row, "Name")
        if not isinstance(kind, str) or not isinstance(name, str):
            return False
        return all(granted(identity, need) for need in config_entry_read(kind, name))

    return keep_rows(answer, allowed)


@reads("node")
def agent_members(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """/v1/agent/members rows (`Name` is the member's node): node:read on each."""
    return keep_rows(answer, lambda row: can_read(identity, "node", lookup(row, "Name")))


@reads("node", "service")
def health_checks(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """HealthCheck rows (/v1/health/node, /checks, /state): node:read, and service:read for a
    service's check (a node-level check has no ServiceName and needs node:read only)."""
    def allowed(row: Mapping[str, Any]) -> bool:
        service = lookup(row, "ServiceName")
        return can_read(identity, "node", lookup(row, "Node")) and (
            not service or can_read(identity, "service", service))

    return keep_rows(answer, allowed)


@reads("service")
def catalog_node_services(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """/v1/catalog/node/<n> ({"Node", "Services": {id: service}}; node:read was asked before):
    services the token may not read are dropped."""
    services = lookup(answer, "Services") if isinstance(answer, Mapping) else None
    if not isinstance(services, Mapping):
        return answer, False
    kept = {sid: svc for sid, svc in services.items()
            if isinstance(svc, Mapping) and can_read(identity, "service", lookup(svc, "Service"))}
    return {**answer, "Services": kept}, len(kept) != len(services)

"""What an operation needs, decided once for both doors: the HTTP route table (`permissions.py`)
and the RPC method table (`rpc_permissions.py`) pull the names out of their own request shape and
ask these functions, so a registration needs the same thing whether it arrives as JSON on port
8500 or as a forwarded RPC on the leader (reference/acl.md §5).

`enforce` turns the first unmet need into Consul's 403 text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import grpc

from meshfed.fsm.acl import INTENTION, Access, permission_denied_text
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.intentions.reads import find_by_id as find_intention_by_id
from meshfed.fsm.records import HealthCheck, Node, NodeService
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError
from meshfed.server.acl.resolver import Identity

CONNECT_PROXY_KIND = "connect-proxy"


class Need(NamedTuple):
    """One permission: `resource:access`, on `segment` for named resources (None for unnamed)."""

    resource: str
    access: Access
    segment: str | None = None


def granted(identity: Identity, need: Need) -> bool:
    return identity.authorizer.allowed(need.resource, need.access, need.segment)


def enforce(identity: Identity, needs: Iterable[Need], on_denied: Callable[[], None] | None = None) -> None:
    """Raise Consul's 403 for the first need the identity lacks.

    Raises:
        RPCError: PERMISSION_DENIED with `permission_denied_text` (names the AccessorID, never the secret).
    """
    for need in needs:
        if not granted(identity, need):
            if on_denied is not None:
                on_denied()
            raise RPCError(
                grpc.StatusCode.PERMISSION_DENIED,
                permission_denied_text(identity.accessor_id, need.resource, need.access, need.segment),
            )


def operator(access: Access) -> list[Need]:
    return [Need("operator", access)]


def _node_changes(existing: Node | None, node: Node) -> bool:
    """Consul asks node:write only when the registration would create or change the node entry."""
    if existing is None:
        return True
    return (existing.address != node.address or dict(existing.tagged_addresses) != dict(node.tagged_addresses)
            or dict(existing.meta) != dict(node.meta) or (bool(node.id) and existing.id != node.id))


def registration(existing: Node | None, node: Node, service: NodeService | None,
                 checks: Sequence[HealthCheck]) -> list[Need]:
    """`vetRegisterWithACL`: node write if the node changes, service write on the service (and on a
    proxy's destination), node or service write per check."""
    needs: list[Need] = []
    if _node_changes(existing, node):
        needs.append(Need("node", Access.WRITE, node.node))
    if service is not None:
        needs.append(Need("service", Access.WRITE, service.service))
        destination = lookup(service.proxy or {}, "DestinationServiceName") if service.kind == CONNECT_PROXY_KIND else None
        if isinstance(destination, str) and destination:
            needs.append(Need("service", Access.WRITE, destination))
    for check in checks:
        service_name = check.service_name or (service.service if service is not None and check.service_id else "")
        if check.service_id and service_name:
            needs.append(Need("service", Access.WRITE, service_name))
        else:
            needs.append(Need("node", Access.WRITE, check.node or node.node))
    return needs


def deregistration(node: str, service_name: str | None, check: HealthCheck | None) -> list[Need]:
    """`vetDeregisterWithACL`: service write for a service or a service's check, else node write.
    An unknown service or check falls back to node write, so probing names gains nothing."""
    if service_name:
        return [Need("service", Access.WRITE, service_name)]
    if check is not None and check.service_id and check.service_name:
        return [Need("service", Access.WRITE, check.service_name)]
    return [Need("node", Access.WRITE, node)]


# Config entry kinds -> (read needs, write needs) builders, reference §5's table.
_SERVICE_KINDS = ("service-defaults", "service-resolver", "service-router", "service-splitter")
_GATEWAY_KINDS = ("ingress-gateway", "terminating-gateway")


def config_entry_read(kind: str, name: str) -> list[Need]:
    if kind in ("proxy-defaults", "mesh"):
        return []
    if kind in _SERVICE_KINDS or kind in _GATEWAY_KINDS:
        return [Need("service", Access.READ, name)]
    if kind == "service-intentions":
        return [Need(INTENTION, Access.READ, name)]
    if kind == "exported-services":
        return [Need("mesh", Access.READ)]
    return operator(Access.READ)  # a kind this table does not know: the operator decides


def config_entry_write(kind: str, name: str) -> list[Need]:
    if kind in ("proxy-defaults", "mesh", "exported-services", *_GATEWAY_KINDS):
        return [Need("mesh", Access.WRITE)]  # mesh falls back to operator (§4.2)
    if kind in _SERVICE_KINDS:
        return [Need("service", Access.WRITE, name)]
    if kind == "service-intentions":
        return [Need(INTENTION, Access.WRITE, name)]
    return operator(Access.WRITE)


def intention(destination: str, access: Access) -> list[Need]:
    return [Need(INTENTION, access, destination)]


# Names a request refers to by ID only; both tables look them up the same way.


def service_name_of(state: StateStore, node: str, service_id: str) -> str | None:
    _, _, services = state.catalog_node(node)
    return next((service.service for service in services if service.id == service_id), None)


def intention_destination(state: StateStore, intention_id: str) -> str | None:
    _, entries = state.config_entry_list("service-intentions")
    found = find_intention_by_id([entry.body for entry in entries], intention_id)
    destination = lookup(found, "DestinationName") if found is not None else None
    return destination if isinstance(destination, str) else None


def deregistration_of(state: StateStore, node: str, service_id: str, check_id: str) -> list[Need]:
    service_name = service_name_of(state, node, service_id) if service_id else None
    check = state.get_check(node, check_id) if check_id and not service_id else None
    return deregistration(node, service_name, check)


def registration_of(state: StateStore, node: Node, service: NodeService | None,
                    checks: Sequence[HealthCheck]) -> list[Need]:
    return registration(state.catalog_node(node.node)[1], node, service, checks)


def ttl_update_of(state: StateStore, check_id: str, node: str) -> list[Need]:
    """A TTL update writes the check: service write for a service's check, else node write on its
    node (or on the `node` the caller named when the ID does not pick one check)."""
    ttl_checks = [check for check in state.checks_of_type("ttl") if check.check_id == check_id
                  and (not node or check.node.lower() == node.lower())]
    if len(ttl_checks) == 1 and ttl_checks[0].service_id and ttl_checks[0].service_name:
        return [Need("service", Access.WRITE, ttl_checks[0].service_name)]
    return [Need("node", Access.WRITE, ttl_checks[0].node if len(ttl_checks) == 1 else node)]

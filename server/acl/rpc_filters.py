"""ACL filtering of catalog, health, intention, config-entry and mesh-gateway reads on the RPC port,
as HTTP's filters do on JSON.

The RPC port answers whoever reaches it: a follower forwarding a client's read, but also, unless
`tls.defaults.verify_incoming` is on, any process on the network. Its reads carry the caller's
token (a follower forwards its client's), so the server that answers drops the rows that token
may not read and says so in the answer's meta (`results_filtered`), which the HTTP layer turns into
`X-Consul-Results-Filtered-By-ACLs` on whichever server the client asked. A forwarding follower's
own HTTP filter then finds nothing left to drop: the answer is the same wherever it was computed.

Each filter takes the wire answer of one RPC method (records as `to_wire` makes them) and returns
`(kept, removed_any)`, the contract of server/acl/filters.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshfed.server.acl.filters import (
    ResultFilter,
    can_read,
    catalog_services,
    config_entries,
    intentions,
    keep_rows,
    mesh_gateways_by_datacenter,
    reads,
)
from meshfed.server.acl.resolver import Identity


def _node_ok(identity: Identity, node: Any) -> bool:
    return isinstance(node, Mapping) and can_read(identity, "node", node.get("node"))


def _service_ok(identity: Identity, service: Any) -> bool:
    return isinstance(service, Mapping) and can_read(identity, "service", service.get("service"))


@reads("node")
def list_nodes(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`[node]`: node:read on each."""
    return keep_rows(answer, lambda node: _node_ok(identity, node))


@reads("node", "service")
def node_services(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`{node, services}`: nothing without node:read on the node (Consul answers no node), else
    the services the token may read."""
    if not isinstance(answer, Mapping) or answer.get("node") is None:
        return answer, False
    if not _node_ok(identity, answer["node"]):
        return {"node": None, "services": []}, True
    services, removed = keep_rows(answer.get("services"), lambda service: _service_ok(identity, service))
    return {**answer, "services": services}, removed


@reads("node", "service")
def node_service_pairs(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`[[node, service]]`: node:read and service:read on each pair."""
    if not isinstance(answer, list):
        return answer, False
    kept = [pair for pair in answer if isinstance(pair, (list, tuple)) and len(pair) == 2
            and _node_ok(identity, pair[0]) and _service_ok(identity, pair[1])]
    return kept, len(kept) != len(answer)


@reads("node", "service")
def check_service_nodes(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`[{node, service, checks}]`: node:read and service:read on each entry."""
    return keep_rows(answer, lambda row: _node_ok(identity, row.get("node")) and _service_ok(identity, row.get("service")))


@reads("service", "node")
def checks(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`[check]`: service:read on a service's check, node:read on the node for a node check."""
    def allowed(check: Mapping[str, Any]) -> bool:
        service = check.get("service_name")
        return can_read(identity, "service", service) if service else can_read(identity, "node", check.get("node"))

    return keep_rows(answer, allowed)


@reads("intention")
def intention(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """One intention view, or None: kept with intention:read on its destination."""
    if answer is None:
        return answer, False
    kept, removed = intentions(identity, [answer])
    return (None, True) if removed else (answer, False)


def config_entry(identity: Identity, answer: Any) -> tuple[Any, bool]:
    """`{"entry": entry or None}`: the entry kept with its kind's read permission."""
    if not isinstance(answer, Mapping) or answer.get("entry") is None:
        return answer, False
    _, removed = config_entries(identity, [answer["entry"]])
    return ({**answer, "entry": None}, True) if removed else (answer, False)


# Not filtered here: status and CA roots (public) and mesh-gateway modes (derived from config
# entries a proxy must read). FederationState Get/List/ListSince need operator:read and peering
# reads peering:read (server/acl/rpc_permissions.py), as over HTTP. What replication and the
# gateways read is filtered as Consul filters it, so the tokens its documents recommend keep
# working: the replication token (operator, service_prefix read with intentions read) reads every
# config entry, the gateway token (service_prefix and node_prefix read) every mesh gateway.
RPC_READ_FILTERS: dict[str, ResultFilter] = {
    "Catalog/ListNodes": list_nodes,
    "Catalog/ListServices": catalog_services,  # `{service: tags}` on both ports
    "Catalog/NodeServices": node_services,
    "Catalog/ServiceInstances": node_service_pairs,
    "Catalog/ServiceNodes": node_service_pairs,
    "Health/ServiceNodes": check_service_nodes,
    "Health/NodeChecks": checks,
    "Health/ServiceChecks": checks,
    "Health/ChecksInState": checks,
    "Intention/List": intentions,
    "Intention/Get": intention,
    "ConfigEntry/List": config_entries,
    "ConfigEntry/Get": config_entry,
    "ConfigEntry/ListAll": config_entries,
    "FederationState/ListMeshGateways": mesh_gateways_by_datacenter,  # `{dc: [gateway wire]}`
}

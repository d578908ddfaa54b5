"""Consul's JSON shapes for catalog, health and federation-state records.

The state machine keeps snake_case frozen dataclasses (`fsm/records.py`); HTTP clients written for
Consul (py-consul, Envoy control planes, operators' scripts) parse Consul's CamelCase keys and
rely on its quirks: which keys are omitted when empty, which are rendered `null`, which are always
present as `{}`. Every function here is a pure mapping from one record to a JSON-ready dict so the
handlers never hand-build a shape and two endpoints showing the same record cannot drift apart.

Empty-value conventions follow Go's `encoding/json` over Consul's `structs` types
(reference/federation.md §1.2 and the §4 example): a nil slice or map is `null`, an
`omitempty` field disappears, a non-pointer struct is always an object. Consul's
`/v1/health/service` and `/v1/catalog/service` handlers additionally turn nil tag lists into `[]`
before writing the response; `tags_as_lists=True` reproduces that for the health endpoint, and
`catalog_service_json` always does it.

Returned dicts are fresh at the top level of every map, but nested values inside free-form maps
(Proxy, Connect, Definition) are shared with the record, which is fine for serialising and means
callers must not mutate them.
"""

from __future__ import annotations

from typing import Any

from meshfed.fsm.records import (
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
    ServiceAddress,
)

# Consul's ConnectProxyConfig embeds these two structs by value, so they are rendered as `{}` even
# on services that are not proxies; clients that decode into Consul's api types expect them.
_PROXY_STRUCT_KEYS = ("MeshGateway", "Expose")

# Consul reports every Raft server with this protocol version in /v1/operator/raft/configuration.
RAFT_PROTOCOL_VERSION = "3"


def _map_or_null(value: dict[str, Any]) -> dict[str, Any] | None:
    """Go renders a nil map as `null`; our records use `{}` for "nothing", so map it back."""
    return dict(value) if value else None


def _tags(tags: tuple[str, ...], as_list: bool) -> list[str] | None:
    if tags:
        return list(tags)
    return [] if as_list else None


def _tagged_service_addresses(tagged: dict[str, ServiceAddress]) -> dict[str, dict[str, Any]]:
    return {name: {"Address": addr.address, "Port": addr.port} for name, addr in tagged.items()}


def _proxy(proxy: dict[str, Any]) -> dict[str, Any]:
    """Proxy config as sent, plus Consul's always-present struct keys when the client left them out.

    The stored map keeps the client's key spelling (decode does not canonicalise free-form
    config), so the defaults are added only when no key matches case-insensitively; otherwise a
    client that sent `meshGateway` would see two keys for one setting.
    """
    present = {key.casefold() for key in proxy}
    rendered: dict[str, Any] = {key: {} for key in _PROXY_STRUCT_KEYS if key.casefold() not in present}
    rendered.update(proxy)
    return rendered


def node_json(n: Node) -> dict[str, Any]:
    """A catalog node as Consul's `structs.Node`."""
    return {
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": _map_or_null(n.tagged_addresses),
        "Meta": _map_or_null(n.meta),
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    }


def service_json(s: NodeService, *, tags_as_lists: bool = False) -> dict[str, Any]:
    """A service instance as Consul's `structs.NodeService` (omitempty keys dropped when empty)."""
    out: dict[str, Any] = {}
    if s.kind:
        out["Kind"] = s.kind
    out["ID"] = s.id
    out["Service"] = s.service
    out["Tags"] = _tags(s.tags, tags_as_lists)
    out["Address"] = s.address
    if s.tagged_addresses:
        out["TaggedAddresses"] = _tagged_service_addresses(s.tagged_addresses)
    out["Meta"] = _map_or_null(s.meta)
    if s.port:
        out["Port"] = s.port
    out["Weights"] = {"Passing": s.weights.passing, "Warning": s.weights.warning}
    out["EnableTagOverride"] = s.enable_tag_override
    out["Proxy"] = _proxy(s.proxy)
    out["Connect"] = dict(s.connect)
    out["PeerName"] = ""
    out["CreateIndex"] = s.create_index
    out["ModifyIndex"] = s.modify_index
    return out


def check_json(c: HealthCheck, *, tags_as_lists: bool = False) -> dict[str, Any]:
    """A health check as Consul's `structs.HealthCheck`.

    `ttl` and `status_updated_at` are meshfed bookkeeping for TTL expiry and have no key in
    Consul's shape, so they are not shown.
    """
    return {
        "Node": c.node,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status,
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": _tags(c.service_tags, tags_as_lists),
        "Type": c.type,
        "Interval": c.interval,
        "Timeout": c.timeout,
        "ExposedPort": 0,
        "Definition": dict(c.definition),
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


def csn_json(csn: CheckServiceNode, *, tags_as_lists: bool = False) -> dict[str, Any]:
    """One element of `/v1/health/service/<s>` or of a federation state's `MeshGateways`.

    Pass `tags_as_lists=True` for the health endpoint (Consul's handler rewrites nil tags to
    `[]` there) and leave it off for the internal federation-state endpoints, which pass the
    stored records through untouched.
    """
    return {
        "Node": node_json(csn.node),
        "Service": service_json(csn.service, tags_as_lists=tags_as_lists),
        "Checks": [check_json(c, tags_as_lists=tags_as_lists) for c in csn.checks],
    }


def federation_state_json(fs: FederationState) -> dict[str, Any]:
    """A federation state as Consul's `structs.FederationState` (MeshGateways is omitempty)."""
    out: dict[str, Any] = {"Datacenter": fs.datacenter}
    if fs.mesh_gateways:
        out["MeshGateways"] = [csn_json(gw) for gw in fs.mesh_gateways]
    out["UpdatedAt"] = fs.updated_at
    out["PrimaryModifyIndex"] = fs.primary_modify_index
    out["CreateIndex"] = fs.create_index
    out["ModifyIndex"] = fs.modify_index
    return out


def catalog_service_json(node: Node, svc: NodeService) -> dict[str, Any]:
    """One element of `GET /v1/catalog/service/<s>`: Consul's flattened `structs.ServiceNode`.

    The raft indexes are the service's, not the node's, because that is what a client watching
    one service instance needs to see change. `ServiceTaggedAddresses` is omitempty in Consul's
    struct; `ServiceTags` is `[]` rather than `null` because Consul's handler rewrites it.
    """
    out: dict[str, Any] = {
        "ID": node.id,
        "Node": node.node,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": _map_or_null(node.tagged_addresses),
        "NodeMeta": _map_or_null(node.meta),
        "ServiceKind": svc.kind,
        "ServiceID": svc.id,
        "ServiceName": svc.service,
        "ServiceTags": _tags(svc.tags, as_list=True),
        "ServiceAddress": svc.address,
    }
    if svc.tagged_addresses:
        out["ServiceTaggedAddresses"] = _tagged_service_addresses(svc.tagged_addresses)
    out.update(
        {
            "ServiceWeights": {"Passing": svc.weights.passing, "Warning": svc.weights.warning},
            "ServiceMeta": _map_or_null(svc.meta),
            "ServicePort": svc.port,
            "ServiceEnableTagOverride": svc.enable_tag_override,
            "ServiceProxy": _proxy(svc.proxy),
            "ServiceConnect": dict(svc.connect),
            "CreateIndex": svc.create_index,
            "ModifyIndex": svc.modify_index,
        }
    )
    return out


def server_json(s: ServerInfo, leader: bool) -> dict[str, Any]:
    """One element of `Servers` in `/v1/operator/raft/configuration`.

    Consul's `ID` is the Raft server ID; meshfed identifies Raft members by node name, so ID and
    Node carry the same value. Every member is a voter (meshfed has no non-voting members).
    """
    return {
        "ID": s.node,
        "Node": s.node,
        "Address": s.rpc_address,  # Consul's: the server RPC address (ip:8300), not the Raft port
        "Leader": leader,
        "Voter": True,
        "ProtocolVersion": RAFT_PROTOCOL_VERSION,
    }

"""The one table of what every HTTP route needs (reference/acl.md §5), and the few it exempts.

A route (method, pattern as registered with aiohttp) maps to a `Declaration`:
- `needs`: what the request must be allowed before the handler runs (a 403 otherwise). It gets the
  request's facts (match info, query, decoded JSON body, the local state) and returns `Need`s;
- `filter`: for list reads, which rows the token may see (`filters.py`); dropped rows set
  `X-Consul-Results-Filtered-By-ACLs: true`.
A route in neither `ROUTES` nor `EXEMPT` is refused (403) when ACLs are on: a new route that forgot
its declaration fails closed, and `tests/unit/test_acl_permissions.py` names it.

Bodies are decoded with the handlers' own decoders, so a body the handler would refuse is refused
here with the same 400 before any permission is asked (Consul decodes before it checks, too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from meshfed.fsm.acl import Access
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.state import StateStore
from meshfed.server.acl import filters
from meshfed.server.acl.filters import ResultFilter
from meshfed.server.acl.needs import (
    Need,
    config_entry_read,
    config_entry_write,
    deregistration_of,
    intention,
    intention_destination,
    registration_of,
    ttl_update_of,
)
from meshfed.server.http.decode import decode_catalog_deregister, decode_catalog_register
from meshfed.server.http.request_memo import once_per_request
from meshfed.server.http.routes_unsupported import METHODS as UNSUPPORTED_METHODS
from meshfed.server.http.routes_unsupported import UNSUPPORTED, canonical_of


@dataclass(frozen=True)
class RouteFacts:
    """What a declaration may look at. `body` is the decoded JSON (None for no body)."""

    request: web.Request
    body: Any
    state: StateStore
    datacenter: str
    node_name: str

    def match(self, name: str) -> str:
        return self.request.match_info.get(name, "")

    def query(self, name: str) -> str:
        return self.request.query.get(name, "")


NeedsOf = Callable[[RouteFacts], list[Need]]


@dataclass(frozen=True)
class Declaration:
    needs: NeedsOf | None = None
    filter: ResultFilter | None = None
    reads_body: bool = False


def _unnamed(resource: str, access: Access) -> NeedsOf:
    return lambda facts: [Need(resource, access)]


def _register(facts: RouteFacts) -> list[Need]:
    # Decoded once per request, shared with the handler; the handler sets the node's datacenter
    # itself, so the default passed here does not change what it stores.
    node, service, checks = once_per_request(
        facts.request, "catalog_register", lambda: decode_catalog_register(facts.body, facts.datacenter))
    return registration_of(facts.state, node, service, checks)


def _deregister(facts: RouteFacts) -> list[Need]:
    node, service_id, check_id = decode_catalog_deregister(facts.body, facts.datacenter)
    return deregistration_of(facts.state, node, service_id, check_id)


def _check_update(facts: RouteFacts) -> list[Need]:
    return ttl_update_of(facts.state, facts.match("check_id"), facts.query("node"))


def _body_field(facts: RouteFacts, name: str) -> str:
    value = lookup(facts.body, name) if isinstance(facts.body, Mapping) else None
    return value if isinstance(value, str) else ""


def _config_put(facts: RouteFacts) -> list[Need]:
    return config_entry_write(_body_field(facts, "Kind"), _body_field(facts, "Name"))


def _intention_by_id(access: Access) -> NeedsOf:
    def needs(facts: RouteFacts) -> list[Need]:
        destination = intention_destination(facts.state, facts.match("id")) or ""
        found = intention(destination, access) if destination else []
        new_destination = _body_field(facts, "DestinationName")
        return found + (intention(new_destination, access) if new_destination else [])

    return needs


def _intentions_named(facts: RouteFacts) -> list[Need]:
    return [need for name in facts.request.query.getall("name", []) for need in intention(name, Access.READ)]


def _agent_register(facts: RouteFacts) -> list[Need]:
    """service:write on the service and on its sidecar (named after it unless given)."""
    name = _body_field(facts, "Name") or _body_field(facts, "Service")
    connect = lookup(facts.body, "Connect") if isinstance(facts.body, Mapping) else None
    spec = lookup(connect, "SidecarService") if isinstance(connect, Mapping) else None
    names = [name]
    if isinstance(spec, Mapping):
        sidecar_name = lookup(spec, "Name", "Service")
        names.append(sidecar_name if isinstance(sidecar_name, str) and sidecar_name else f"{name}-sidecar-proxy")
    return [Need("service", Access.WRITE, n) for n in names]


def _trust_bundle_reader(facts: RouteFacts) -> list[Need]:
    service = facts.query("service")
    return [Need("service", Access.READ, service)] if service else [Need("peering", Access.READ)]


def _agent_service_by_id(access: Access) -> NeedsOf:
    def needs(facts: RouteFacts) -> list[Need]:
        _, _, services = facts.state.catalog_node(facts.node_name)
        found = next((s.service for s in services if s.id == facts.match("id")), facts.match("id"))
        return [Need("service", access, found)]

    return needs


OPERATOR_READ = Declaration(_unnamed("operator", Access.READ))
OPERATOR_WRITE = Declaration(_unnamed("operator", Access.WRITE))
ACL_READ = Declaration(_unnamed("acl", Access.READ))
ACL_WRITE = Declaration(_unnamed("acl", Access.WRITE))

PEERING_READ = Declaration(_unnamed("peering", Access.READ))
PEERING_WRITE = Declaration(_unnamed("peering", Access.WRITE))

ROUTES: dict[tuple[str, str], Declaration] = {
    # peering:* falls back to operator:* when a policy has no peering rule (fsm/acl/authorizer.py).
    ("POST", "/v1/peering/token"): PEERING_WRITE,
    ("POST", "/v1/peering/establish"): PEERING_WRITE,
    ("GET", "/v1/peering/{name}"): PEERING_READ,
    ("DELETE", "/v1/peering/{name}"): PEERING_WRITE,
    ("GET", "/v1/peerings"): PEERING_READ,
    # Consul's TrustBundleListByService: a proxy or gateway names the service it acts for.
    ("GET", "/v1/internal/peering/trust-bundles"): Declaration(_trust_bundle_reader),
    ("GET", "/v1/operator/raft/configuration"): OPERATOR_READ,
    ("POST", "/v1/operator/raft/transfer-leader"): OPERATOR_WRITE,
    ("GET", "/v1/operator/autopilot/health"): OPERATOR_READ,
    ("GET", "/v1/operator/autopilot/configuration"): OPERATOR_READ,
    ("PUT", "/v1/operator/autopilot/configuration"): OPERATOR_WRITE,
    ("DELETE", "/v1/operator/raft/peer"): OPERATOR_WRITE,
    ("PUT", "/v1/agent/leave"): Declaration(lambda facts: [Need("agent", Access.WRITE, facts.node_name)]),
    ("GET", "/v1/agent/members"): Declaration(filter=filters.agent_members),
    ("GET", "/v1/agent/metrics"): Declaration(lambda facts: [Need("agent", Access.READ, facts.node_name)]),
    ("GET", "/metrics"): Declaration(lambda facts: [Need("agent", Access.READ, facts.node_name)]),
    **{("PUT", f"/v1/agent/check/{verb}/{{check_id}}"): Declaration(_check_update, reads_body=verb == "update")
       for verb in ("pass", "warn", "fail", "update")},
    ("PUT", "/v1/catalog/register"): Declaration(_register, reads_body=True),
    ("PUT", "/v1/catalog/deregister"): Declaration(_deregister, reads_body=True),
    # A leaf is the service's identity: only who may write the service may hold it (Consul).
    ("GET", "/v1/agent/connect/ca/leaf/{service}"): Declaration(
        lambda facts: [Need("service", Access.WRITE, facts.match("service"))]),
    # The destination's proxy asks: it must be allowed to write (be) the target service.
    ("POST", "/v1/agent/connect/authorize"): Declaration(
        lambda facts: [Need("service", Access.WRITE, _body_field(facts, "Target"))], reads_body=True),
    ("PUT", "/v1/agent/service/register"): Declaration(_agent_register, reads_body=True),
    ("PUT", "/v1/agent/service/deregister/{id}"): Declaration(_agent_service_by_id(Access.WRITE)),
    ("GET", "/v1/agent/service/{id}"): Declaration(_agent_service_by_id(Access.READ)),
    ("GET", "/v1/agent/services"): Declaration(filter=filters.agent_services),
    ("GET", "/v1/agent/checks"): Declaration(filter=filters.agent_checks),
    ("GET", "/v1/catalog/services"): Declaration(filter=filters.catalog_services),
    ("GET", "/v1/catalog/nodes"): Declaration(filter=filters.catalog_nodes),
    ("GET", "/v1/catalog/service/{service}"): Declaration(filter=filters.catalog_service_nodes),
    ("GET", "/v1/health/service/{service}"): Declaration(filter=filters.health_service_nodes),
    ("GET", "/v1/catalog/connect/{service}"): Declaration(filter=filters.catalog_service_nodes),
    ("GET", "/v1/health/connect/{service}"): Declaration(filter=filters.health_service_nodes),
    ("PUT", "/v1/config"): Declaration(_config_put, reads_body=True),
    ("GET", "/v1/config/{kind}"): Declaration(filter=filters.config_entries),
    ("GET", "/v1/config/{kind}/{name}"): Declaration(
        lambda facts: config_entry_read(facts.match("kind"), facts.match("name"))),
    ("DELETE", "/v1/config/{kind}/{name}"): Declaration(
        lambda facts: config_entry_write(facts.match("kind"), facts.match("name"))),
    ("GET", "/v1/catalog/node/{node}"): Declaration(
        lambda facts: [Need("node", Access.READ, facts.match("node"))], filter=filters.catalog_node_services),
    ("GET", "/v1/catalog/gateway-services/{gateway}"): Declaration(
        lambda facts: [Need("service", Access.READ, facts.match("gateway"))]),
    # Consul asks nothing for the DC list; the token is still resolved (an unknown one is refused).
    ("GET", "/v1/catalog/datacenters"): Declaration(lambda facts: []),
    ("GET", "/v1/agent/self"): Declaration(lambda facts: [Need("agent", Access.READ, facts.node_name)]),
    # Consul: reload changes the agent (agent:write); monitor shows its log (agent:read).
    ("PUT", "/v1/agent/reload"): Declaration(lambda facts: [Need("agent", Access.WRITE, facts.node_name)]),
    ("GET", "/v1/agent/monitor"): Declaration(lambda facts: [Need("agent", Access.READ, facts.node_name)]),
    **{("GET", path): Declaration(filter=filters.health_checks)
       for path in ("/v1/health/node/{node}", "/v1/health/checks/{service}", "/v1/health/state/{state}")},
    # APIs meshfed lacks answer a 404 saying so; nothing there to protect beyond a valid token.
    **{(method, canonical_of(prefix)): Declaration(lambda facts: [])
       for prefix in UNSUPPORTED for method in UNSUPPORTED_METHODS},
    ("GET", "/v1/connect/ca/configuration"): OPERATOR_READ,
    ("PUT", "/v1/connect/ca/configuration"): OPERATOR_WRITE,
    ("GET", "/v1/connect/intentions"): Declaration(filter=filters.intentions),
    ("POST", "/v1/connect/intentions"): Declaration(
        lambda facts: intention(_body_field(facts, "DestinationName"), Access.WRITE), reads_body=True),
    ("GET", "/v1/connect/intentions/exact"): Declaration(
        lambda facts: intention(facts.query("destination"), Access.READ)),
    ("PUT", "/v1/connect/intentions/exact"): Declaration(
        lambda facts: intention(facts.query("destination"), Access.WRITE)),
    ("DELETE", "/v1/connect/intentions/exact"): Declaration(
        lambda facts: intention(facts.query("destination"), Access.WRITE)),
    ("GET", "/v1/connect/intentions/match"): Declaration(_intentions_named),
    ("GET", "/v1/connect/intentions/check"): Declaration(
        lambda facts: intention(facts.query("destination"), Access.READ)),
    ("GET", "/v1/connect/intentions/{id}"): Declaration(_intention_by_id(Access.READ)),
    ("PUT", "/v1/connect/intentions/{id}"): Declaration(_intention_by_id(Access.WRITE), reads_body=True),
    ("DELETE", "/v1/connect/intentions/{id}"): Declaration(_intention_by_id(Access.WRITE)),
    ("GET", "/v1/internal/federation-states"): OPERATOR_READ,
    ("GET", "/v1/internal/federation-states/mesh-gateways"): Declaration(filter=filters.mesh_gateways_by_datacenter),
    ("GET", "/v1/internal/federation-state/"): OPERATOR_READ,
    ("GET", "/v1/internal/federation-state/{dc}"): OPERATOR_READ,
    ("DELETE", "/v1/internal/federation-state/{dc}"): OPERATOR_WRITE,
    ("GET", "/v1/internal/gateway-locator"): OPERATOR_READ,
    ("GET", "/v1/internal/replication"): OPERATOR_READ,
    ("GET", "/v1/internal/federation/check"): OPERATOR_READ,
    # Consul's SnapshotAllowed is acl:write for both: a backup holds every token secret and the CA's
    # keys, so saving one is as strong as management (server/endpoints/snapshot.py).
    ("GET", "/v1/snapshot"): ACL_WRITE,
    ("PUT", "/v1/snapshot"): ACL_WRITE,
    # Any valid token may read itself: the token is resolved (an unknown secret is 'ACL not found'),
    # nothing more is asked.
    ("GET", "/v1/acl/token/self"): Declaration(lambda facts: []),
    # Consul asks no permission: indexes, times and errors of ACL replication, no ACL data (§3).
    ("GET", "/v1/acl/replication"): Declaration(lambda facts: []),
    # ACL objects: reading needs acl:read, changing them acl:write (reference §5).
    **{("GET", path): ACL_READ for path in (
        "/v1/acl/policies", "/v1/acl/policy/{id}", "/v1/acl/policy/name/{name}", "/v1/acl/roles",
        "/v1/acl/role/{id}", "/v1/acl/role/name/{name}", "/v1/acl/tokens", "/v1/acl/token/{accessor}")},
    **{(method, path): ACL_WRITE for method, path in (
        ("PUT", "/v1/acl/policy"), ("PUT", "/v1/acl/policy/{id}"), ("DELETE", "/v1/acl/policy/{id}"),
        ("PUT", "/v1/acl/role"), ("PUT", "/v1/acl/role/{id}"), ("DELETE", "/v1/acl/role/{id}"),
        ("PUT", "/v1/acl/token"), ("PUT", "/v1/acl/token/{accessor}"), ("DELETE", "/v1/acl/token/{accessor}"),
        ("PUT", "/v1/acl/token/{accessor}/clone"))},
}

# Routes that ask no permission, and why. Keep this short: each entry is a hole by design.
EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/v1/status/leader"): "Consul serves cluster status to anyone (health probes use it)",
    ("GET", "/v1/status/peers"): "Consul serves cluster status to anyone",
    ("GET", "/v1/connect/ca/roots"): "trust anchors are public: every proxy fetches them (reference §5)",
    ("GET", "/v1/agent/connect/ca/roots"): "the same public trust anchors, at the agent path proxies use",
    ("PUT", "/v1/acl/bootstrap"): "allowed once with no token at all; afterwards refused with the reset index",
    ("GET", "/v1/internal/mesh-gateway-mode"): "reads proxy-defaults' gateway mode; proxy-defaults reads need "
                                               "no permission (reference §5)",
}


def declaration_of(method: str, pattern: str) -> Declaration | None:
    """The declaration for a route; None when the route is unknown here (refused when ACLs are on).
    HEAD is answered like GET, so it needs what GET needs."""
    method = "GET" if method == "HEAD" else method
    if (method, pattern) in EXEMPT:
        return Declaration()  # neither needs nor filter: the token is not even resolved
    return ROUTES.get((method, pattern))


def route_key(request: web.Request) -> tuple[str, str]:
    """(method, pattern as registered): the table's key, and a bounded metric label."""
    resource = request.match_info.route.resource
    return request.method, resource.canonical if resource is not None else request.path

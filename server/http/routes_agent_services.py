"""`/v1/agent/service/register`, `/v1/agent/service/deregister/<id>`, `/v1/agent/services` and
`/v1/agent/service/<id>` (reference/mesh-dataplane.md §1).

A registration is Consul's `AgentServiceRegistration`; `Connect.SidecarService` becomes a second
registration with Consul's defaults (server/endpoints/sidecar.py). Both go through the catalog
decoder, so a bad field is a 400 naming it, and are written in one Raft entry. Deregistering a
service removes its sidecar with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.records import NodeService, to_wire
from meshfed.server.endpoints.agent_services import AgentServices
from meshfed.server.endpoints.sidecar import (
    SidecarError,
    parent_identity,
    sidecar_id,
    sidecar_registration,
    without_sidecar_spec,
)
from meshfed.server.http import filter_schemas
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.decode import decode_catalog_register
from meshfed.server.http.params import BadRequest, parse_header, row_filter
from meshfed.server.http.respond import json_body, meta_headers
from meshfed.server.http.shapes import service_json

CHECK_KEYS = ("Check", "Checks")


def _agent(request: web.Request) -> AgentServices:
    services = api_of(request).agent_services
    if services is None:
        raise BadRequest("agent services are not served by this server")
    return services


def _checks(service: Mapping[str, Any], service_id: str, name: str) -> list[dict[str, Any]]:
    """A service's own `Check`/`Checks`, with the ids and names Consul's agent gives them."""
    single = lookup(service, "Check")
    many = lookup(service, "Checks") or []
    if not isinstance(many, list):
        raise BadRequest("Checks: must be a list")
    checks = ([single] if isinstance(single, Mapping) and single else []) + list(many)
    out = []
    for n, check in enumerate(checks, start=1):
        if not isinstance(check, Mapping):
            raise BadRequest(f"Checks[{n - 1}]: must be an object")
        default_id = f"service:{service_id}" if len(checks) == 1 else f"service:{service_id}:{n}"
        out.append({**check, "CheckID": lookup(check, "CheckID", "ID") or default_id,
                    "Name": lookup(check, "Name") or f"Service '{name}' check", "ServiceID": service_id})
    return out


def _catalog_body(agent: AgentServices, service: Mapping[str, Any]) -> dict[str, Any]:
    service_id, name = parent_identity(service)
    kind = lookup(service, "Kind")
    if kind == "connect-proxy" and not lookup(lookup(service, "Proxy") or {}, "DestinationServiceName"):
        raise BadRequest("Proxy.DestinationServiceName must be set")
    body = {k: v for k, v in service.items() if k not in CHECK_KEYS and k.lower() not in ("check", "checks")}
    body["ID"], body["Service"] = service_id, name
    body.pop("Name", None)
    node, svc, checks = decode_catalog_register(
        {"Node": agent.node, "Address": agent.address, "Datacenter": agent.datacenter, "Service": body,
         "Checks": _checks(service, service_id, name)}, agent.datacenter)
    return {"node": to_wire(node), "service": to_wire(svc), "checks": to_wire(checks)}


async def register(request: web.Request) -> web.Response:
    agent = _agent(request)
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise BadRequest("Request decode failed: the body must be a JSON object")
    try:
        parent_id, _ = parent_identity(raw)
        existing = agent.service(sidecar_id(parent_id))
        sidecar = sidecar_registration(raw, agent.sidecar_ports(sidecar_id(parent_id)),
                                       existing.port if existing is not None else None)
    except SidecarError as exc:
        raise BadRequest(str(exc)) from None
    rows = [_catalog_body(agent, without_sidecar_spec(raw))] + ([_catalog_body(agent, sidecar)] if sidecar else [])
    meta, _ = await agent.register_many(parse_header(request, write=True), {"registrations": rows})
    return web.Response(status=200, headers=meta_headers(meta))


async def deregister(request: web.Request) -> web.Response:
    agent = _agent(request)
    service_id = request.match_info["id"]
    if agent.service(service_id) is None:
        raise web.HTTPNotFound(text=f'Unknown service ID "{service_id}"')
    ids = [service_id] + ([sidecar_id(service_id)] if agent.service(sidecar_id(service_id)) else [])
    meta, _ = await agent.deregister_many(parse_header(request, write=True), {"node": agent.node, "service_ids": ids})
    return web.Response(status=200, headers=meta_headers(meta))


def agent_service_json(agent: AgentServices, service: NodeService) -> dict[str, Any]:
    out = service_json(service, tags_as_lists=True)
    out["Datacenter"] = agent.datacenter
    return out


async def list_services(request: web.Request) -> web.Response:
    agent = _agent(request)
    predicate = row_filter(request, filter_schemas.SERVICE)
    index, services = agent.services()
    rows = {sid: agent_service_json(agent, s) for sid, s in sorted(services.items())}
    body = rows if predicate is None else {sid: row for sid, row in rows.items() if predicate(row)}
    return json_body(body, headers=meta_headers(api_of(request).queries.meta(max(1, index))))


async def get_service(request: web.Request) -> web.Response:
    agent = _agent(request)
    service = agent.service(request.match_info["id"])
    if service is None:
        raise web.HTTPNotFound(text=f'Unknown service ID "{request.match_info["id"]}"')
    index = max(1, service.modify_index)
    return json_body(agent_service_json(agent, service), headers=meta_headers(api_of(request).queries.meta(index)))


def add(app: web.Application) -> None:
    app.router.add_put("/v1/agent/service/register", register)
    app.router.add_put("/v1/agent/service/deregister/{id}", deregister)
    app.router.add_get("/v1/agent/services", list_services)
    app.router.add_get("/v1/agent/service/{id}", get_service)

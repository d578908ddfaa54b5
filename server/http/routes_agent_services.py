"""`/v1/agent/service/register`, `/v1/agent/service/deregister/<id>`, `/v1/agent/services`,
`/v1/agent/service/<id>` and `/v1/agent/checks` (reference/mesh-dataplane.md §1).

The bodies of register and deregister live in server/http/agent_registration.py, shared with the
service definitions of the config files. Deregistering a service removes its sidecar with it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed.fsm.records import NodeService
from meshfed.server.endpoints.agent_services import AgentServices
from meshfed.server.http import filter_schemas
from meshfed.server.http.agent_registration import deregister_service, register_service
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.params import BadRequest, parse_header, row_filter
from meshfed.server.http.respond import json_body, meta_headers
from meshfed.server.http.shapes import check_json, service_json


def _agent(request: web.Request) -> AgentServices:
    services = api_of(request).agent_services
    if services is None:
        raise BadRequest("agent services are not served by this server")
    return services


async def register(request: web.Request) -> web.Response:
    agent = _agent(request)
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise BadRequest("Request decode failed: the body must be a JSON object")
    meta = await register_service(agent, parse_header(request, write=True), raw)
    return web.Response(status=200, headers=meta_headers(meta))


async def deregister(request: web.Request) -> web.Response:
    agent = _agent(request)
    service_id = request.match_info["id"]
    if agent.service(service_id) is None:
        raise web.HTTPNotFound(text=f'Unknown service ID "{service_id}"')
    meta = await deregister_service(agent, parse_header(request, write=True), service_id)
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


async def list_checks(request: web.Request) -> web.Response:
    """Consul's `/v1/agent/checks`: {CheckID: AgentCheck} of this agent's node, from this replica
    (the agent answers about itself); the status is the one the check runner last wrote."""
    agent = _agent(request)
    predicate = row_filter(request, filter_schemas.CHECK)
    index, checks = agent.checks()
    rows = {}
    for check in checks:
        row = check_json(check, tags_as_lists=True)
        del row["CreateIndex"], row["ModifyIndex"]  # AgentCheck has no Raft indexes
        if predicate is None or predicate(row):
            rows[check.check_id] = row
    return json_body(rows, headers=meta_headers(api_of(request).queries.meta(max(1, index))))


def add(app: web.Application) -> None:
    app.router.add_put("/v1/agent/service/register", register)
    app.router.add_put("/v1/agent/service/deregister/{id}", deregister)
    app.router.add_get("/v1/agent/services", list_services)
    app.router.add_get("/v1/agent/service/{id}", get_service)
    app.router.add_get("/v1/agent/checks", list_checks)

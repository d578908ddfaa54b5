"""GET /v1/internal/federation-state(s)...: the debug endpoints operators script against
(reference/federation.md §4; operators.md #13324). GET only; other methods are 405."""

from __future__ import annotations

from aiohttp import web

from meshfed.fsm.records import csn_from_wire, federation_state_from_wire
from meshfed.server.http.app import api_of
from meshfed.server.http.params import BadRequest, parse_header
from meshfed.server.http.respond import json_body, meta_headers, with_meta
from meshfed.server.http.shapes import csn_json, federation_state_json


async def list_states(request: web.Request) -> web.Response:
    api = api_of(request)
    meta, states = await api.federation.list(parse_header(request), {})
    return with_meta([federation_state_json(federation_state_from_wire(s)) for s in states], meta)


async def list_mesh_gateways(request: web.Request) -> web.Response:
    api = api_of(request)
    meta, by_dc = await api.federation.list_mesh_gateways(parse_header(request), {})
    body = {dc: [csn_json(csn_from_wire(c)) for c in (gws or [])] for dc, gws in by_dc.items()}
    return with_meta(body, meta)


async def get_state(request: web.Request) -> web.Response:
    api = api_of(request)
    name = request.match_info.get("dc", "")
    if not name:
        raise BadRequest("Missing datacenter name")
    meta, body = await api.federation.get(parse_header(request), {"datacenter": name})
    raw = body.get("state") if isinstance(body, dict) else None
    if raw is None:
        return web.Response(status=404, headers=meta_headers(meta))
    return with_meta(
        {
            "State": federation_state_json(federation_state_from_wire(raw)),
            "Index": meta.index,
            "LastContact": int(meta.last_contact * 1e9),
            "KnownLeader": meta.known_leader,
            "ConsistencyLevel": meta.consistency_level,
            "NotModified": False,
            "Backend": 0,
            "ResultsFilteredByACLs": False,
        },
        meta,
    )


async def delete_state(request: web.Request) -> web.Response:
    """meshfed extra (Consul has no HTTP delete): remove a decommissioned DC's record in the primary.
    Re-targeted to the primary wherever it arrives, like every federation-state write."""
    api = api_of(request)
    name = request.match_info.get("dc", "")
    header = parse_header(request, write=True)
    await api.federation.apply(header, {"op": "delete", "state": {"datacenter": name}})
    return json_body(True)


async def missing_name(request: web.Request) -> web.Response:
    raise BadRequest("Missing datacenter name")


def add(app: web.Application) -> None:
    app.router.add_get("/v1/internal/federation-states", list_states)
    app.router.add_get("/v1/internal/federation-states/mesh-gateways", list_mesh_gateways)
    app.router.add_get("/v1/internal/federation-state/", missing_name)
    app.router.add_get("/v1/internal/federation-state/{dc}", get_state)
    app.router.add_delete("/v1/internal/federation-state/{dc}", delete_state)

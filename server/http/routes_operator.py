"""Live Raft membership over HTTP, in Consul's shapes: `POST /v1/operator/raft/transfer-leader`,
`DELETE /v1/operator/raft/peer` and `PUT /v1/agent/leave` (server/endpoints/operator_raft.py)."""

from __future__ import annotations

from aiohttp import web

from meshfed.server.http.api import api_of
from meshfed.server.http.params import BadRequest, parse_header
from meshfed.server.http.respond import json_body

# Consul's own text for a remove-peer that names no server.
MISSING_PEER = "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"


def _endpoint(request: web.Request):  # type: ignore[no-untyped-def]
    endpoint = api_of(request).operator_raft
    if endpoint is None:
        raise BadRequest("this server does not manage Raft membership")
    return endpoint


async def transfer_leader(request: web.Request) -> web.Response:
    """Consul answers {"Success": true} once the transfer happened; `id` picks the target."""
    body = {"id": request.query.get("id", "")}
    _, answer = await _endpoint(request).transfer_leader(parse_header(request), body)
    return json_body({"Success": bool(answer.get("success")), "Leader": answer.get("leader", "")})


async def remove_peer(request: web.Request) -> web.Response:
    server_id, address = request.query.get("id", ""), request.query.get("address", "")
    if not server_id and not address:
        raise BadRequest(MISSING_PEER)
    if server_id and address:
        raise BadRequest("id and address: give only one of them")
    await _endpoint(request).remove_peer(parse_header(request), {"id": server_id, "address": address})
    return web.Response(status=200)


async def leave(request: web.Request) -> web.Response:
    """Consul's PUT /v1/agent/leave: this server leaves the Raft configuration, then stops."""
    api = api_of(request)
    if api.leave is None:
        raise BadRequest("this server cannot leave: it was not started as a cluster member")
    await api.leave(parse_header(request).token)
    return web.Response(status=200)


def add(app: web.Application) -> None:
    app.router.add_post("/v1/operator/raft/transfer-leader", transfer_leader)
    app.router.add_delete("/v1/operator/raft/peer", remove_peer)
    app.router.add_put("/v1/agent/leave", leave)

"""Live Raft membership over HTTP, in Consul's shapes: `POST /v1/operator/raft/transfer-leader`,
`DELETE /v1/operator/raft/peer`, `PUT /v1/agent/leave` (server/endpoints/operator_raft.py) and
autopilot's read side, `GET /v1/operator/autopilot/health`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed.fsm.consul_formats.durations import format_duration
from meshfed.fsm.records import server_info_from_wire
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.params import BadRequest, parse_header
from meshfed.server.http.respond import json_body, with_meta
from meshfed.server.raft import failure_tolerance

# Consul autopilot's defaults: a server is healthy while it is alive, heard from within this
# long, and at most this many entries behind the leader.
LAST_CONTACT_THRESHOLD = 0.2  # seconds
MAX_TRAILING_LOGS = 250

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


def autopilot_health_of(config: dict[str, Any], last_contact_threshold: float = LAST_CONTACT_THRESHOLD,
                        max_trailing_logs: int = MAX_TRAILING_LOGS) -> dict[str, Any]:
    """Consul's OperatorHealthReply from the (leader's) Raft configuration rows and the
    autopilot thresholds. Pure."""
    rows = config["servers"]
    leader_index = max((row.get("last_index") or 0 for row in rows if row["leader"]), default=0)
    servers = []
    for row in rows:
        info = server_info_from_wire(row["server"]) if row["server"] else None
        contact, index = row.get("last_contact"), row.get("last_index")
        healthy = (bool(row.get("alive")) and contact is not None
                   and (row["leader"] or contact <= last_contact_threshold)
                   and index is not None and leader_index - index <= max_trailing_logs)
        servers.append({
            "ID": row["node"], "Name": row["node"],
            "Address": info.rpc_address if info else row["raft_address"],
            "SerfStatus": "alive" if row.get("alive") else "failed",
            "Leader": row["leader"], "Voter": row.get("voter", True),
            "LastContact": "" if contact is None else format_duration(round(contact, 3)),
            "LastTerm": config.get("term", 0), "LastIndex": index or 0, "Healthy": healthy,
        })
    healthy_voters = sum(1 for server in servers if server["Healthy"] and server["Voter"])
    voters = sum(1 for server in servers if server["Voter"])
    return {"Healthy": healthy_voters == voters, "FailureTolerance": failure_tolerance(voters, healthy_voters),
            "Servers": servers}


async def autopilot_health(request: web.Request) -> web.Response:
    """Consul answers 429 (with the same body) while the cluster is not healthy."""
    api = api_of(request)
    _, config = await api.status.raft_configuration(parse_header(request), {})
    _, settings = api.state.autopilot_config()
    reply = autopilot_health_of(config, settings.last_contact_threshold, settings.max_trailing_logs)
    return json_body(reply, status=200 if reply["Healthy"] else 429)


def _autopilot(request: web.Request):  # type: ignore[no-untyped-def]
    endpoint = api_of(request).autopilot
    if endpoint is None:
        raise BadRequest("this server does not serve the autopilot configuration")
    return endpoint


async def autopilot_get_configuration(request: web.Request) -> web.Response:
    meta, config = await _autopilot(request).get_configuration(parse_header(request), {})
    return with_meta(config, meta)


async def autopilot_set_configuration(request: web.Request) -> web.Response:
    """Consul's PUT: the body is the configuration; `?cas=` makes it a check-and-set. Answers
    true, or false when `cas` did not match the stored ModifyIndex."""
    raw_cas = request.query.get("cas")
    cas = None
    if raw_cas is not None:
        try:
            cas = int(raw_cas)
        except ValueError:
            raise BadRequest(f"Error parsing cas value: {raw_cas!r} is not an integer") from None
    body = await read_json(request)
    _, applied = await _autopilot(request).set_configuration(parse_header(request), {"config": body, "cas": cas})
    return json_body(applied)


def add(app: web.Application) -> None:
    app.router.add_get("/v1/operator/autopilot/configuration", autopilot_get_configuration)
    app.router.add_put("/v1/operator/autopilot/configuration", autopilot_set_configuration)
    app.router.add_get("/v1/operator/autopilot/health", autopilot_health)
    app.router.add_post("/v1/operator/raft/transfer-leader", transfer_leader)
    app.router.add_delete("/v1/operator/raft/peer", remove_peer)
    app.router.add_put("/v1/agent/leave", leave)

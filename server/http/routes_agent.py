"""Status, operator and agent endpoints: leader/peers, Raft configuration, members, the agent's
self-description, TTL check updates, metrics (Prometheus text or Consul's JSON), config reload and
the live log stream (monitor)."""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from meshfed.fsm.consul_formats.durations import format_duration
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.records import server_info_from_wire
from meshfed.rpc.header import RequestHeader
from meshfed.server.config import ConfigError
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.params import BadRequest, parse_header
from meshfed.server.http.respond import json_body, with_meta
from meshfed.server.http.shapes import server_json
from meshfed.server.log_stream import level_number
from meshfed.server.metrics import json_snapshot

# serf's member states, as Consul's /v1/agent/members reports them
MEMBER_ALIVE = 1
MEMBER_FAILED = 4

MONITOR_IDLE_CHECK = 1.0  # seconds without a log line before a monitor checks its client is still there
PROMETHEUS_ACCEPT = ("application/openmetrics-text", "text/plain; version=0.4.0")


async def status_leader(request: web.Request) -> web.Response:
    meta, leader = await api_of(request).status.leader(parse_header(request), {})
    return with_meta(leader, meta)


async def status_peers(request: web.Request) -> web.Response:
    meta, peers = await api_of(request).status.peers(parse_header(request), {})
    return with_meta(peers, meta)


async def raft_configuration(request: web.Request) -> web.Response:
    meta, config = await api_of(request).status.raft_configuration(parse_header(request), {})
    servers = []
    for row in config["servers"]:
        if row["server"] is not None:
            server = server_json(server_info_from_wire(row["server"]), row["leader"])
        else:
            server = {"ID": row["node"], "Node": row["node"], "Address": row["raft_address"],
                      "Leader": row["leader"], "Voter": True, "ProtocolVersion": "3"}
        # Beyond Consul's keys: the answering server's (by default the leader's) view of the member,
        # in autopilot's words, so list-peers can show a dead server as such.
        contact = row.get("last_contact")
        server["Healthy"] = bool(row.get("alive"))
        server["LastContact"] = "" if contact is None else format_duration(round(contact, 3))
        servers.append(server)
    return with_meta({"Servers": servers, "Index": config["index"]}, meta)


def _member_rows(config: dict[str, Any], datacenter: str) -> list[dict[str, Any]]:
    rows = []
    for row in config["servers"]:
        info = server_info_from_wire(row["server"]) if row["server"] else None
        host, _, port = row["raft_address"].rpartition(":")
        rows.append(
            {
                "Name": row["node"],
                "Addr": host,
                "Port": int(port or 0),
                "Tags": {
                    "role": "consul",
                    "dc": info.datacenter if info else datacenter,
                    "rpc_addr": info.rpc_address if info else "",
                    "http_addr": info.http_address if info else "",
                    "leader": "true" if row["leader"] else "false",
                },
                "Status": MEMBER_ALIVE if row.get("alive") else MEMBER_FAILED,
            }
        )
    return rows


async def members(request: web.Request) -> web.Response:
    """Consul's /v1/agent/members shape for the servers of this DC (meshfed has no client agents).

    Status is the leader's view of each member (alive while it answers heartbeats), so a killed
    server reads failed within seconds; the published server record only fills in the tags."""
    api = api_of(request)
    meta, config = await api.status.raft_configuration(RequestHeader(), {})
    return with_meta(_member_rows(config, api.datacenter), meta)


def _version() -> str:
    try:
        return package_version("meshfed")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0"


async def agent_self(request: web.Request) -> web.Response:
    """Consul's /v1/agent/self, with the keys clients read: Config (who and where this agent is),
    Member (as in /v1/agent/members), Stats (string values, as Consul's) and Meta. DebugConfig
    carries only non-secret settings; Coord is null (meshfed keeps no network coordinates)."""
    api = api_of(request)
    cfg = api.wan.config
    # This server's own view (stale): describing itself must not need a leader.
    meta, raft = await api.status.raft_configuration(RequestHeader(allow_stale=True), {})
    rows = _member_rows(raft, api.datacenter)
    me = next((row for row in rows if row["Name"].lower() == cfg.node_name.lower()), None)
    if me is not None:
        me["Status"] = MEMBER_ALIVE  # it is answering; peer health covers the others only
    leader = next((row for row in rows if row["Tags"]["leader"] == "true"), None)
    _, states = api.state.federation_state_list()
    known = {api.datacenter.lower(), *(fs.datacenter.lower() for fs in states)}
    settings = {
        "Datacenter": cfg.datacenter,
        "PrimaryDatacenter": cfg.primary,
        "NodeName": cfg.node_name,
        "NodeID": "",
        "Revision": "",
        "Server": True,
        "Version": _version(),
        "BuildDate": "",
    }
    answer = {
        "Config": settings,
        "DebugConfig": {
            "Datacenter": cfg.datacenter, "PrimaryDatacenter": cfg.primary, "NodeName": cfg.node_name,
            "ServerMode": True, "ACLsEnabled": cfg.acl.enabled, "BootstrapExpect": cfg.bootstrap_expect,
            "ConnectEnabled": cfg.connect.enabled,
            "ConnectMeshGatewayWANFederationEnabled": cfg.connect.enable_mesh_gateway_wan_federation,
        },
        "Coord": None,
        "Member": me,
        "Stats": {
            "agent": {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"},
            "consul": {
                "server": "true",
                "leader": "true" if me is not None and me["Tags"]["leader"] == "true" else "false",
                "leader_addr": leader["Tags"]["rpc_addr"] if leader else "",
                "known_datacenters": str(len(known)),
                "bootstrap": "false",
            },
            "build": {"version": _version(), "revision": "", "prerelease": ""},
        },
        "Meta": {"consul-network-segment": ""},
    }
    return with_meta(answer, meta)


def _check_update(status: str | None):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        api = api_of(request)
        header = parse_header(request, write=True)
        new_status = status
        output = request.query.get("note", "")
        if status is None:  # /v1/agent/check/update/<id> with {"Status", "Output"}
            body = await read_json(request) or {}
            if not isinstance(body, dict):
                raise BadRequest("Request decode failed: expected a JSON object")
            new_status = lookup(body, "Status")
            output = lookup(body, "Output") or ""
            if not isinstance(new_status, str) or not isinstance(output, str):
                raise BadRequest("Status and Output must be strings")
        body = {
            "check_id": request.match_info["check_id"],
            "status": new_status,
            "output": output,
            "node": request.query.get("node", ""),
        }
        await api.catalog.update_ttl(header, body)
        return web.Response(status=200)

    return handler


async def metrics(request: web.Request) -> web.Response:
    api = api_of(request)
    accept = request.headers.get("Accept", "")
    wants_prometheus = (
        request.path == "/metrics"
        or request.query.get("format") == "prometheus"
        or any(kind in accept for kind in PROMETHEUS_ACCEPT)
    )
    if wants_prometheus:
        if not api.prometheus_enabled:
            return web.Response(status=415, text="Prometheus is not enabled since its retention time is not positive")
        return web.Response(body=generate_latest(api.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
    return json_body(json_snapshot(api.metrics.registry))


async def reload(request: web.Request) -> web.Response:
    """Consul's PUT /v1/agent/reload: re-read the config files the server started with. A new
    configuration that does not load is a 400 naming file, key and reason; the running one stays."""
    api = api_of(request)
    if api.reloader is None:
        raise BadRequest("this server was not started from config files it can re-read")
    try:
        await asyncio.get_running_loop().run_in_executor(None, api.reloader.reload)
    except ConfigError as exc:
        raise BadRequest(f"Failed to reload configs: {exc}") from None
    return web.Response(status=200)


async def monitor(request: web.Request) -> web.StreamResponse:
    """Consul's GET /v1/agent/monitor?loglevel=: the server's log lines as they are written, in a
    chunked plain-text answer that lasts until the client goes away (or the server stops)."""
    api = api_of(request)
    try:
        level = level_number(request.query.get("loglevel", "info") or "info")
    except ValueError as exc:
        raise BadRequest(f"loglevel: {exc}") from None
    if api.logs is None:
        raise BadRequest("this server's log is not available for monitoring")
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    with api.logs.subscribe(level) as subscription:
        try:
            while True:
                try:
                    line = await asyncio.wait_for(subscription.next_line(), MONITOR_IDLE_CHECK)
                except TimeoutError:
                    # aiohttp does not cancel a handler whose client left; a quiet log would keep
                    # the subscription (and a debug root level) alive forever without this check.
                    if request.transport is None or request.transport.is_closing():
                        break
                    continue
                await response.write(line.encode("utf-8", "replace") + b"\n")
        except ConnectionError:
            pass  # the client went away: the normal end of a monitor
    return response


def add(app: web.Application) -> None:
    app.router.add_put("/v1/agent/reload", reload)
    app.router.add_get("/v1/agent/monitor", monitor)
    app.router.add_get("/v1/status/leader", status_leader)
    app.router.add_get("/v1/status/peers", status_peers)
    app.router.add_get("/v1/operator/raft/configuration", raft_configuration)
    app.router.add_get("/v1/agent/members", members)
    app.router.add_get("/v1/agent/self", agent_self)
    app.router.add_put("/v1/agent/check/pass/{check_id}", _check_update("passing"))
    app.router.add_put("/v1/agent/check/warn/{check_id}", _check_update("warning"))
    app.router.add_put("/v1/agent/check/fail/{check_id}", _check_update("critical"))
    app.router.add_put("/v1/agent/check/update/{check_id}", _check_update(None))
    app.router.add_get("/v1/agent/metrics", metrics)
    app.router.add_get("/metrics", metrics)

"""/v1/peering*: cluster peering as Consul serves it (connect-data.md §D), and the `?peer=` reads
of imported services (peering.md §2). The rules live in server/peering/; this maps JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from meshfed.fsm.peering.records import ImportedService
from meshfed.fsm.records import CheckServiceNode
from meshfed.fsm.state import serves_connect
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.params import BadRequest, flag, parse_header
from meshfed.server.http.respond import json_body, meta_headers, with_meta
from meshfed.server.http.shapes import catalog_service_json, csn_json
from meshfed.server.peering.endpoint import PeeringEndpoint


def _endpoint(request: web.Request) -> PeeringEndpoint:
    endpoint = api_of(request).peering
    if endpoint is None:
        raise web.HTTPNotFound(text="peering is not served by this server")
    return endpoint


def peering_json(wire: dict[str, Any]) -> dict[str, Any]:
    """A row as `GET /v1/peering/<name>` answers it; empty optional fields are omitted (§D.5)."""
    shaped: dict[str, Any] = {"ID": wire["id"], "Name": wire["name"], "State": wire["state"] or "PENDING"}
    optional = {
        "PeerID": wire["peer_id"], "PeerCAPems": wire["peer_ca_pems"], "PeerServerName": wire["peer_server_name"],
        "PeerServerAddresses": wire["peer_server_addresses"], "Meta": wire["meta"], "DeletedAt": wire["deleted_at"],
    }
    shaped.update({key: value for key, value in optional.items() if value})
    shaped["StreamStatus"] = {
        "ImportedServices": list(wire["imported_services"]) or None,
        "ExportedServices": list(wire.get("exported_services") or []) or None,
        # The leader's tracker (server/peering/tracker.py), fed by the peering stream.
        "LastHeartbeat": (wire.get("stream") or {}).get("last_heartbeat"),
        "LastReceive": (wire.get("stream") or {}).get("last_receive"),
        "LastSend": (wire.get("stream") or {}).get("last_send"),
    }
    shaped["CreateIndex"] = wire["create_index"]
    shaped["ModifyIndex"] = wire["modify_index"]
    shaped["Remote"] = {"Partition": "default", "Datacenter": wire["remote_datacenter"]}
    return shaped


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("Request decoding failed: the body must be a JSON object")
    return body


async def generate_token(request: web.Request) -> web.Response:
    meta, answer = await _endpoint(request).generate_token(parse_header(request, write=True), await _body(request))
    return with_meta(answer, meta)


async def establish(request: web.Request) -> web.Response:
    meta, answer = await _endpoint(request).establish(parse_header(request, write=True), await _body(request))
    return with_meta(answer, meta)


async def read(request: web.Request) -> web.Response:
    name = request.match_info["name"].lower()
    meta, answer = await _endpoint(request).read(parse_header(request), {"Name": name})
    if answer["peering"] is None:
        return web.Response(status=404, text=f'Peering not found for "{name}"', headers=meta_headers(meta))
    return with_meta(peering_json(answer["peering"]), meta)


async def list_peerings(request: web.Request) -> web.Response:
    meta, rows = await _endpoint(request).list(parse_header(request), {})
    return with_meta([peering_json(row) for row in rows], meta)


async def delete(request: web.Request) -> web.Response:
    meta, _ = await _endpoint(request).delete(parse_header(request, write=True), {"Name": request.match_info["name"]})
    return web.Response(status=200, headers=meta_headers(meta))


def imported_csn_json(imported: ImportedService, peer: str) -> list[dict[str, Any]]:
    """Imported instances with `PeerName` set on node and service; `Node.Datacenter` is the
    exporter's, as Consul answers (peering.md §2)."""
    rows = []
    for csn in imported.nodes:
        row = csn_json(csn, tags_as_lists=True)
        row["Node"]["PeerName"] = peer
        row["Service"]["PeerName"] = peer
        for check in row["Checks"]:
            check["PeerName"] = peer
        rows.append(row)
    return rows


# The table an import writes (fsm/peering/store.py): a blocking `?peer=` read parks on it.
IMPORTS_TABLES = ("peering_imports",)


def _imported(
    request: web.Request, connect: bool
) -> tuple[str, Callable[[], tuple[int, list[CheckServiceNode]]]]:
    """The `?peer=` peer's imported instances of the path's service, or (`connect`) those that
    serve Connect for it, selected as the local reads select (fsm/state.py), with a query that
    runs under the request's blocking rules."""
    api = api_of(request)
    peer = request.query["peer"].lower()
    service = request.match_info["service"]

    def query() -> tuple[int, list[CheckServiceNode]]:
        index, found = api.state.peering_imported(peer, None if connect else service)
        csns = [csn for imported in found for csn in imported.nodes]
        if connect:
            csns = [csn for csn in csns if serves_connect(csn.service, service)]
        return index, csns

    return peer, query


async def imported_health(request: web.Request, connect: bool = False) -> web.Response:
    """`/v1/health/service/<svc>?peer=<name>` (and `/v1/health/connect/<svc>?peer=`): only what
    that peer exports to us; an unknown peer is `[]` (200). Never mixed into answers without
    `?peer`, nor local instances into answers with it. Blocking (`?index=`) like the local read,
    so a client watching imports waits for the next import instead of spinning."""
    peer, query = _imported(request, connect)
    meta, csns = await api_of(request).queries.run(parse_header(request), IMPORTS_TABLES, query)
    rows = imported_csn_json(ImportedService(peer, request.match_info["service"], tuple(csns)), peer)
    if flag(request, "passing"):
        rows = [row for row in rows if all(c["Status"] == "passing" for c in row["Checks"])]
    return json_body(rows, headers=meta_headers(meta))


async def imported_catalog(request: web.Request, connect: bool = False) -> web.Response:
    """`/v1/catalog/service/<svc>?peer=<name>` (and `/v1/catalog/connect/<svc>?peer=`): the
    imported instances in the catalog's flat shape, with `PeerName` set."""
    peer, query = _imported(request, connect)
    meta, csns = await api_of(request).queries.run(parse_header(request), IMPORTS_TABLES, query)
    rows = [{**catalog_service_json(csn.node, csn.service), "PeerName": peer} for csn in csns]
    return json_body(rows, headers=meta_headers(meta))


async def imported_services(request: web.Request) -> web.Response:
    """`/v1/catalog/services?peer=<name>`: {service: [tags]} of what that peer exports to us."""
    api = api_of(request)
    peer = request.query["peer"]
    meta, found = await api.queries.run(parse_header(request), IMPORTS_TABLES, lambda: api.state.peering_imported(peer))
    services = {
        imported.service: sorted({tag for csn in imported.nodes for tag in csn.service.tags})
        for imported in found
    }
    return json_body(services, headers=meta_headers(meta))


def add(app: web.Application) -> None:
    app.router.add_post("/v1/peering/token", generate_token)
    app.router.add_post("/v1/peering/establish", establish)
    app.router.add_get("/v1/peering/{name}", read)
    app.router.add_delete("/v1/peering/{name}", delete)
    app.router.add_get("/v1/peerings", list_peerings)

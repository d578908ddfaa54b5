"""`/v1/catalog/connect/<service>` and `/v1/health/connect/<service>`: the instances that accept
Connect traffic for a service (its sidecar proxies, or itself when Connect-native), in the same
shapes, parameters (`passing`, `tag`, `dc`, blocking) and ACL filtering as the plain routes.
A proxy resolves its upstreams with the health one (reference/mesh-dataplane.md §4.3)."""

from __future__ import annotations

from aiohttp import web

from meshfed.fsm.records import csn_from_wire, node_from_wire, service_from_wire
from meshfed.server.http import filter_schemas, routes_peering
from meshfed.server.http.api import api_of
from meshfed.server.http.params import both, flag, keep, node_meta_filter, parse_header, row_filter
from meshfed.server.http.respond import with_meta
from meshfed.server.http.shapes import catalog_service_json, csn_json


async def catalog_connect(request: web.Request) -> web.Response:
    if request.query.get("peer"):  # what serves Connect for the service among the peer's imports
        return await routes_peering.imported_catalog(request, connect=True)
    predicate = both(row_filter(request, filter_schemas.SERVICE_NODE), node_meta_filter(request, "NodeMeta"))
    body = {"service": request.match_info["service"], "tag": request.query.get("tag"), "connect": True}
    meta, pairs = await api_of(request).catalog.service_nodes(parse_header(request), body)
    rows = [catalog_service_json(node_from_wire(n), service_from_wire(s)) for n, s in pairs]
    return with_meta(keep(rows, predicate), meta)


async def health_connect(request: web.Request) -> web.Response:
    if request.query.get("peer"):
        return await routes_peering.imported_health(request, connect=True)
    predicate = both(row_filter(request, filter_schemas.CHECK_SERVICE_NODE), node_meta_filter(request, "Node", "Meta"))
    body = {"service": request.match_info["service"], "tag": request.query.get("tag"),
            "passing": flag(request, "passing"), "connect": True}
    meta, rows = await api_of(request).catalog.health_service_nodes(parse_header(request), body)
    return with_meta(keep([csn_json(csn_from_wire(c), tags_as_lists=True) for c in rows], predicate), meta)


def add(app: web.Application) -> None:
    app.router.add_get("/v1/catalog/connect/{service}", catalog_connect)
    app.router.add_get("/v1/health/connect/{service}", health_connect)

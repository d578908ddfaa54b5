"""`/v1/catalog/connect/<service>` and `/v1/health/connect/<service>`: the instances that accept
Connect traffic for a service (its sidecar proxies, or itself when Connect-native), in the same
shapes, parameters (`passing`, `tag`, `dc`, blocking) and ACL filtering as the plain routes.
A proxy resolves its upstreams with the health one (reference/mesh-dataplane.md §4.3)."""

from __future__ import annotations

from aiohttp import web

from meshfed.server.http import routes_catalog, routes_health, routes_peering
from meshfed.server.http.params import flag


async def catalog_connect(request: web.Request) -> web.Response:
    if request.query.get("peer"):  # what serves Connect for the service among the peer's imports
        return await routes_peering.imported_catalog(request, connect=True)
    return await routes_catalog.service_node_rows(
        request, {"service": request.match_info["service"], "tag": request.query.get("tag"), "connect": True})


async def health_connect(request: web.Request) -> web.Response:
    if request.query.get("peer"):
        return await routes_peering.imported_health(request, connect=True)
    return await routes_health.service_rows(request, {
        "service": request.match_info["service"], "tag": request.query.get("tag"),
        "passing": flag(request, "passing"), "connect": True})


def add(app: web.Application) -> None:
    app.router.add_get("/v1/catalog/connect/{service}", catalog_connect)
    app.router.add_get("/v1/health/connect/{service}", health_connect)

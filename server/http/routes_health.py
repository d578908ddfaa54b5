"""/v1/health/*: service instances with their checks, and checks by node, service or state.

Consul's health handlers turn nil tag lists into `[]`, so the rows here are shaped with
`tags_as_lists=True`. `?filter=` selects on the shaped rows (`filter_schemas.py`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed.fsm.records import check_from_wire, csn_from_wire
from meshfed.server.http import filter_schemas, routes_peering
from meshfed.server.http.api import api_of
from meshfed.server.http.params import (
    both,
    flag,
    keep,
    node_meta_filter,
    parse_header,
    row_filter,
    row_selection,
)
from meshfed.server.http.respond import shared_with_meta, with_meta
from meshfed.server.http.shapes import check_json, csn_json


async def service(request: web.Request) -> web.Response:
    if request.query.get("peer"):
        return await routes_peering.imported_health(request)
    return await service_rows(request, {
        "service": request.match_info["service"],
        "tag": request.query.get("tag"),
        "passing": flag(request, "passing"),
    })


async def service_rows(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Health/ServiceNodes as Consul's CheckServiceNode rows, `?filter=` and `?node-meta=` applied;
    shaped and encoded once per shared answer (`/v1/health/connect/` answers through here too)."""
    predicate = both(row_filter(request, filter_schemas.CHECK_SERVICE_NODE), node_meta_filter(request, "Node", "Meta"))
    meta, rows = await api_of(request).catalog.health_service_nodes(parse_header(request), body)

    def shape(wire: list[Any]) -> list[Any]:
        return keep([csn_json(csn_from_wire(c), tags_as_lists=True) for c in wire], predicate)

    return shared_with_meta(rows, meta, ("health/service", *row_selection(request)), shape)


def _checks(method: str, path_key: str, body_key: str):  # type: ignore[no-untyped-def]
    """A handler answering a list of checks from one catalog endpoint method."""

    async def handler(request: web.Request) -> web.Response:
        predicate = row_filter(request, filter_schemas.CHECK)
        read = getattr(api_of(request).catalog, method)
        meta, rows = await read(parse_header(request), {body_key: request.match_info[path_key]})
        return with_meta(keep([check_json(check_from_wire(c), tags_as_lists=True) for c in rows], predicate), meta)

    return handler


def add(app: web.Application) -> None:
    app.router.add_get("/v1/health/service/{service}", service)
    app.router.add_get("/v1/health/node/{node}", _checks("node_checks", "node", "node"))
    app.router.add_get("/v1/health/checks/{service}", _checks("service_checks", "service", "service"))
    app.router.add_get("/v1/health/state/{state}", _checks("checks_in_state", "state", "state"))

"""Catalog and health endpoints, shaped as Consul's so py-consul and curl users feel at home."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from meshfed.fsm.records import csn_from_wire, node_from_wire, service_from_wire, to_wire
from meshfed.rpc.header import RequestHeader
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.decode import decode_catalog_deregister, decode_catalog_register, lookup
from meshfed.server.http.params import flag, parse_header
from meshfed.server.http.respond import json_body, with_meta
from meshfed.server.http.shapes import catalog_service_json, csn_json, node_json


def _routed_by_body(header: RequestHeader, raw: Any) -> RequestHeader:
    """Consul routes a catalog write by `?dc`, else by the body's `Datacenter` (what py-consul sends
    for `catalog.register(..., dc=)`), else to the receiving server's own datacenter."""
    if header.datacenter or not isinstance(raw, dict):
        return header
    named = lookup(raw, "Datacenter")
    return dataclasses.replace(header, datacenter=named) if isinstance(named, str) and named else header


async def register(request: web.Request) -> web.Response:
    api = api_of(request)
    raw = await read_json(request)
    header = _routed_by_body(parse_header(request, write=True), raw)
    target = header.datacenter or api.datacenter
    node, service, checks = decode_catalog_register(raw, target)
    node = dataclasses.replace(node, datacenter=target)  # the record names the DC that stores it
    body = {"node": to_wire(node), "service": to_wire(service) if service else None, "checks": to_wire(checks)}
    _, ok = await api.catalog.register(header, body)
    return json_body(ok)


async def deregister(request: web.Request) -> web.Response:
    api = api_of(request)
    raw = await read_json(request)
    header = _routed_by_body(parse_header(request, write=True), raw)
    node, service_id, check_id = decode_catalog_deregister(raw, api.datacenter)
    _, ok = await api.catalog.deregister(header, {"node": node, "service_id": service_id, "check_id": check_id})
    return json_body(ok)


async def services(request: web.Request) -> web.Response:
    meta, by_name = await api_of(request).catalog.list_services(parse_header(request), {})
    return with_meta(by_name, meta)


async def nodes(request: web.Request) -> web.Response:
    meta, rows = await api_of(request).catalog.list_nodes(parse_header(request), {})
    return with_meta([node_json(node_from_wire(n)) for n in rows], meta)


async def service_nodes(request: web.Request) -> web.Response:
    body = {"service": request.match_info["service"], "tag": request.query.get("tag")}
    meta, pairs = await api_of(request).catalog.service_nodes(parse_header(request), body)
    return with_meta([catalog_service_json(node_from_wire(n), service_from_wire(s)) for n, s in pairs], meta)


async def health_service(request: web.Request) -> web.Response:
    body = {
        "service": request.match_info["service"],
        "tag": request.query.get("tag"),
        "passing": flag(request, "passing"),
    }
    meta, rows = await api_of(request).catalog.health_service_nodes(parse_header(request), body)
    return with_meta([csn_json(csn_from_wire(c), tags_as_lists=True) for c in rows], meta)


def add(app: web.Application) -> None:
    app.router.add_put("/v1/catalog/register", register)
    app.router.add_put("/v1/catalog/deregister", deregister)
    app.router.add_get("/v1/catalog/services", services)
    app.router.add_get("/v1/catalog/nodes", nodes)
    app.router.add_get("/v1/catalog/service/{service}", service_nodes)
    app.router.add_get("/v1/health/service/{service}", health_service)

"""Catalog endpoints, shaped as Consul's so py-consul and curl users feel at home.

`?filter=` runs on the shaped rows (`filtering.py`, selectors per `filter_schemas.py`), and so
does `?node-meta=key:value`; the health endpoints are in `routes_health.py`."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from meshfed.fsm.records import node_from_wire, service_from_wire
from meshfed.rpc.header import RequestHeader
from meshfed.server.http import filter_schemas, routes_peering
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.decode import decode_catalog_deregister, decode_catalog_register, lookup
from meshfed.server.http.params import both, keep, node_meta_filter, parse_header, row_filter, row_selection
from meshfed.server.http.request_memo import once_per_request
from meshfed.server.http.respond import json_body, shared_with_meta, with_meta
from meshfed.server.http.shapes import catalog_service_json, node_json, service_json
from meshfed.server.raft.trace import TRACE


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
    # Decoded once per request (the ACL check may have done it); the datacenter is set just below.
    node, service, checks = once_per_request(request, "catalog_register", lambda: decode_catalog_register(raw, target))
    if node.datacenter != target:
        node = dataclasses.replace(node, datacenter=target)  # the record names the DC that stores it
    if TRACE is None:
        _, ok = await api.catalog.register_records(header, node, service, checks)
        return json_body(ok)
    try:
        _, ok = await api.catalog.register_records(header, node, service, checks)
    except Exception as exc:
        TRACE.record("http_register", rid=header.request_id, node=node.node, error=f"{type(exc).__name__}: {exc}")
        raise
    TRACE.record("http_register", rid=header.request_id, node=node.node, answer=ok)
    return json_body(ok)


async def deregister(request: web.Request) -> web.Response:
    api = api_of(request)
    raw = await read_json(request)
    header = _routed_by_body(parse_header(request, write=True), raw)
    node, service_id, check_id = decode_catalog_deregister(raw, api.datacenter)
    _, ok = await api.catalog.deregister(header, {"node": node, "service_id": service_id, "check_id": check_id})
    return json_body(ok)


async def services(request: web.Request) -> web.Response:
    """{name: [tags]}. With `?filter=`, Consul filters the service instances (ServiceNode rows)
    and folds what is left, so the instances are fetched and folded here. With `?peer=`, the
    services imported from that peer instead (never mixed into the local map)."""
    if request.query.get("peer"):
        return await routes_peering.imported_services(request)
    predicate = both(row_filter(request, filter_schemas.SERVICE_NODE), node_meta_filter(request, "NodeMeta"))
    if predicate is None:
        meta, by_name = await api_of(request).catalog.list_services(parse_header(request), {})
        return shared_with_meta(by_name, meta)
    meta, pairs = await api_of(request).catalog.service_instances(parse_header(request), {})
    tags: dict[str, set[str]] = {}
    for n, s in pairs:
        row = catalog_service_json(node_from_wire(n), service_from_wire(s))
        if predicate(row):
            tags.setdefault(row["ServiceName"], set()).update(row["ServiceTags"])
    return with_meta({name: sorted(tags[name]) for name in sorted(tags)}, meta)


async def nodes(request: web.Request) -> web.Response:
    predicate = both(row_filter(request, filter_schemas.NODE), node_meta_filter(request, "Meta"))
    meta, rows = await api_of(request).catalog.list_nodes(parse_header(request), {})
    return with_meta(keep([node_json(node_from_wire(n)) for n in rows], predicate), meta)


async def node(request: web.Request) -> web.Response:
    """Consul's NodeServices: {"Node", "Services": {id: service}}, or `null` (200) for an unknown
    node, which py-consul reads as None. `?filter=` selects services."""
    predicate = row_filter(request, filter_schemas.SERVICE)
    body = {"node": request.match_info["node"]}
    meta, found = await api_of(request).catalog.node_services(parse_header(request), body)
    if found["node"] is None:
        return with_meta(None, meta)
    rows = keep([service_json(service_from_wire(s), tags_as_lists=True) for s in found["services"]], predicate)
    return with_meta({"Node": node_json(node_from_wire(found["node"])), "Services": {r["ID"]: r for r in rows}}, meta)


async def service_nodes(request: web.Request) -> web.Response:
    if request.query.get("peer"):
        return await routes_peering.imported_catalog(request)
    return await service_node_rows(request, {"service": request.match_info["service"], "tag": request.query.get("tag")})


async def service_node_rows(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Catalog/ServiceNodes as Consul's ServiceNode rows, `?filter=` and `?node-meta=` applied;
    shaped and encoded once per shared answer (`/v1/catalog/connect/` answers through here too)."""
    predicate = both(row_filter(request, filter_schemas.SERVICE_NODE), node_meta_filter(request, "NodeMeta"))
    meta, pairs = await api_of(request).catalog.service_nodes(parse_header(request), body)

    def shape(wire: list[Any]) -> list[Any]:
        return keep([catalog_service_json(node_from_wire(n), service_from_wire(s)) for n, s in wire], predicate)

    return shared_with_meta(pairs, meta, ("catalog/service", *row_selection(request)), shape)


async def datacenters(request: web.Request) -> web.Response:
    """Every DC with a federation state (replicated from the primary, so every server knows all),
    and this one. Consul sorts by estimated round-trip time from this DC; meshfed keeps no network
    coordinates, so: this DC first, then the others by name."""
    api = api_of(request)
    _, states = api.state.federation_state_list()
    others = sorted({fs.datacenter for fs in states if fs.datacenter.lower() != api.datacenter.lower()})
    return json_body([api.datacenter, *others])


async def gateway_services(request: web.Request) -> web.Response:
    body = {"gateway": request.match_info["gateway"]}
    meta, rows = await api_of(request).catalog.gateway_services(parse_header(request), body)
    return with_meta(rows, meta)


def add(app: web.Application) -> None:
    app.router.add_put("/v1/catalog/register", register)
    app.router.add_put("/v1/catalog/deregister", deregister)
    app.router.add_get("/v1/catalog/services", services)
    app.router.add_get("/v1/catalog/nodes", nodes)
    app.router.add_get("/v1/catalog/service/{service}", service_nodes)
    app.router.add_get("/v1/catalog/node/{node}", node)
    app.router.add_get("/v1/catalog/datacenters", datacenters)
    app.router.add_get("/v1/catalog/gateway-services/{gateway}", gateway_services)

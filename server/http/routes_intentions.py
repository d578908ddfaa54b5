"""/v1/connect/intentions (connect-data §A.5), with 400 instead of Consul's 500 for bad input."""

from __future__ import annotations

import uuid

from aiohttp import web

from meshfed.server.http import filter_schemas
from meshfed.server.http.api import api_of, read_json, required_query
from meshfed.server.http.params import BadRequest, keep, parse_header, row_filter
from meshfed.server.http.respond import json_body, meta_headers, with_meta


def _uuid(request: web.Request) -> str:
    value = request.match_info["id"]
    try:
        uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"Invalid UUID {value!r}") from None
    return value


async def list_intentions(request: web.Request) -> web.Response:
    predicate = row_filter(request, filter_schemas.INTENTION)
    meta, intentions = await api_of(request).intentions.list(parse_header(request), {})
    return with_meta(keep(intentions, predicate), meta)


async def create_legacy(request: web.Request) -> web.Response:
    body = await read_json(request)
    _, reply = await api_of(request).intentions.apply(parse_header(request, write=True),
                                                      {"op": "create", "intention": body or {}})
    return json_body(reply)


async def get_exact(request: web.Request) -> web.Response:
    body = {"source": required_query(request, "source"), "destination": required_query(request, "destination")}
    meta, intention = await api_of(request).intentions.get(parse_header(request), body)
    if intention is None:
        return web.Response(status=404, text="Intention not found", headers=meta_headers(meta))
    return with_meta(intention, meta)


async def put_exact(request: web.Request) -> web.Response:
    body = await read_json(request)
    if body is not None and not isinstance(body, dict):
        raise BadRequest("Request decode failed: expected a JSON object")
    request_body = {"op": "upsert-exact", "source": required_query(request, "source"),
                    "destination": required_query(request, "destination"), "intention": body or {}}
    _, reply = await api_of(request).intentions.apply(parse_header(request, write=True), request_body)
    return json_body(reply)


async def delete_exact(request: web.Request) -> web.Response:
    request_body = {"op": "delete-exact", "source": required_query(request, "source"),
                    "destination": required_query(request, "destination")}
    _, reply = await api_of(request).intentions.apply(parse_header(request, write=True), request_body)
    return json_body(reply)


async def match(request: web.Request) -> web.Response:
    by = request.query.getall("by", [])
    if len(by) != 1:
        raise BadRequest("required query parameter 'by' not set")
    names = request.query.getall("name", [])
    if not names:
        raise BadRequest("required query parameter 'name' not set")
    meta, result = await api_of(request).intentions.match(parse_header(request), {"by": by[0], "names": names})
    return with_meta(result, meta)


async def check(request: web.Request) -> web.Response:
    body = {"source": required_query(request, "source"), "destination": required_query(request, "destination"),
            "source_type": request.query.get("source-type", "consul")}
    meta, result = await api_of(request).intentions.check(parse_header(request), body)
    return with_meta(result, meta)


async def get_by_id(request: web.Request) -> web.Response:
    meta, intention = await api_of(request).intentions.get(parse_header(request), {"id": _uuid(request)})
    if intention is None:
        return web.Response(status=404, text="Intention not found", headers=meta_headers(meta))
    return with_meta(intention, meta)


async def put_by_id(request: web.Request) -> web.Response:
    body = await read_json(request)
    _, reply = await api_of(request).intentions.apply(
        parse_header(request, write=True), {"op": "update", "id": _uuid(request), "intention": body or {}})
    return json_body(reply)


async def delete_by_id(request: web.Request) -> web.Response:
    _, reply = await api_of(request).intentions.apply(parse_header(request, write=True),
                                                      {"op": "delete", "id": _uuid(request)})
    return json_body(reply)


async def authorize(request: web.Request) -> web.Response:
    """POST /v1/agent/connect/authorize: {"Target", "ClientCertURI", "ClientCertSerial"}."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("Request decode failed: the body must be a JSON object with Target and ClientCertURI")
    fields = {str(k).lower(): v for k, v in body.items()}
    meta, answer = await api_of(request).intentions.authorize(
        parse_header(request), {"target": fields.get("target"), "client_uri": fields.get("clientcerturi")})
    return with_meta(answer, meta)


def add(app: web.Application) -> None:
    app.router.add_post("/v1/agent/connect/authorize", authorize)
    app.router.add_get("/v1/connect/intentions", list_intentions)
    app.router.add_post("/v1/connect/intentions", create_legacy)
    app.router.add_get("/v1/connect/intentions/exact", get_exact)
    app.router.add_put("/v1/connect/intentions/exact", put_exact)
    app.router.add_delete("/v1/connect/intentions/exact", delete_exact)
    app.router.add_get("/v1/connect/intentions/match", match)
    app.router.add_get("/v1/connect/intentions/check", check)
    app.router.add_get("/v1/connect/intentions/{id}", get_by_id)
    app.router.add_put("/v1/connect/intentions/{id}", put_by_id)
    app.router.add_delete("/v1/connect/intentions/{id}", delete_by_id)

"""/v1/config: config entries as Consul serves them (connect-data §B.3), with one deliberate
difference: an invalid entry or an unknown kind is a 400 naming the field, not a 500."""

from __future__ import annotations

from aiohttp import web

from meshfed.server.http import filter_schemas
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.params import BadRequest, keep, parse_header, row_filter
from meshfed.server.http.respond import json_body, meta_headers, with_meta


def _cas(request: web.Request) -> int | None:
    if "cas" not in request.query:
        return None
    try:
        cas = int(request.query["cas"])
        if cas < 0:
            raise ValueError
    except ValueError:
        raise BadRequest(f"Invalid cas value {request.query['cas']!r}: want a non-negative integer") from None
    return cas


async def put_entry(request: web.Request) -> web.Response:
    api = api_of(request)
    header = parse_header(request, write=True)
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise BadRequest("Request decoding failed: the body must be one config entry (a JSON object)")
    _, ok = await api.config_entries.apply(header, {"entry": raw, "cas": _cas(request)})
    return json_body(bool(ok))


async def get_entry(request: web.Request) -> web.Response:
    api = api_of(request)
    kind, name = request.match_info["kind"], request.match_info["name"]
    meta, body = await api.config_entries.get(parse_header(request), {"kind": kind, "name": name})
    if body["entry"] is None:
        return web.Response(status=404, text=f'Config entry not found for "{kind}" / "{name}"',
                            headers=meta_headers(meta))
    return with_meta(body["entry"], meta)


async def list_entries(request: web.Request) -> web.Response:
    api = api_of(request)
    kind = request.match_info["kind"]
    predicate = None
    if request.query.get("filter"):
        # Consul filters only service-defaults lists and refuses a filter on any other kind.
        if kind.lower() != "service-defaults":
            raise BadRequest(f"filtering not supported for config entry kind={kind}")
        predicate = row_filter(request, filter_schemas.SERVICE_DEFAULTS)
    meta, entries = await api.config_entries.list(parse_header(request), {"kind": kind})
    return with_meta(keep(entries, predicate), meta)


async def delete_entry(request: web.Request) -> web.Response:
    api = api_of(request)
    cas = _cas(request)
    body = {"kind": request.match_info["kind"], "name": request.match_info["name"], "cas": cas}
    _, ok = await api.config_entries.delete(parse_header(request, write=True), body)
    return json_body({} if cas is None else bool(ok))


def add(app: web.Application) -> None:
    app.router.add_put("/v1/config", put_entry)
    app.router.add_get("/v1/config/{kind}", list_entries)
    app.router.add_get("/v1/config/{kind}/{name}", get_entry)
    app.router.add_delete("/v1/config/{kind}/{name}", delete_entry)

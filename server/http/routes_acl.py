"""/v1/acl/*: bootstrap, policies, roles and tokens as Consul serves them (reference/acl.md §3).

These routes translate HTTP to `ACL.*` endpoint calls and produce Consul's fixed texts for what
only the HTTP shape can get wrong (a missing ID, URL and payload disagreeing, a read that found
nothing). With ACLs disabled the agent passes no ACL endpoint and every route answers 401
`ACL support disabled`. Permissions are not checked here (the enforcement layer does that).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.server.endpoints.acl import ACLEndpoint
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.params import BadRequest, parse_header
from meshfed.server.http.respond import json_body, meta_headers, with_meta

Route = Callable[[web.Request, ACLEndpoint], Awaitable[web.StreamResponse]]


def _acl(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        api = api_of(request)
        if api.acl is None:
            headers = meta_headers(api.queries.meta(api.state.index()))
            return web.Response(status=401, text="ACL support disabled", headers=headers)
        endpoint = api.acl
        return await route(request, endpoint)

    handler.__name__ = route.__name__
    return handler


async def _body(request: web.Request, what: str) -> dict[str, Any]:
    try:
        raw = await read_json(request)
    except BadRequest as exc:
        raise BadRequest(f"{what} decoding failed: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest(f"{what} decoding failed: the body must be a JSON object")
    return raw


def _not_found(text: str, meta: Any) -> web.Response:
    return web.Response(status=404, text=text, headers=meta_headers(meta))


# ---- bootstrap --------------------------------------------------------------------------------


async def bootstrap(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    _, token = await acl.bootstrap(parse_header(request, write=True), await _body(request, "Bootstrap"))
    return json_body(token)


async def replication_status(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    """Answered for the receiving DC by its leader, never forwarded to another DC (reference §3)."""
    header = parse_header(request)
    if header.datacenter and header.datacenter != acl.datacenter:
        raise BadRequest("ACL replication status is only served for this datacenter: drop ?dc")
    meta, status = await acl.replication_status_read(header, {})
    return with_meta(status, meta)


# ---- policies and roles -----------------------------------------------------------------------


def _named_object_routes(kind: str, label: str) -> dict[str, Route]:
    """The six routes policies and roles share, which differ only in the object's name: create,
    update, read by ID or name, list, delete (Consul answers both with the same rules and texts)."""
    singular = kind  # "policy" -> ACLEndpoint.policy_set, and the body key "policy"
    set_, read, list_, delete = (getattr(ACLEndpoint, f"{kind}_{verb}") for verb in ("set", "read", "list", "delete"))
    missing = f"Requested {kind} does not exist: ACL not found"

    async def create(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
        raw = await _body(request, label)
        if lookup(raw, "ID"):
            raise BadRequest(f"Cannot specify the ID when creating a new {kind}")
        _, created = await set_(acl, parse_header(request, write=True), {singular: raw})
        return json_body(created)

    async def update(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
        object_id = request.match_info["id"]
        raw = await _body(request, label)
        if lookup(raw, "ID") and lookup(raw, "ID") != object_id:
            raise BadRequest(f"{label} ID in URL and payload do not match")
        _, updated = await set_(acl, parse_header(request, write=True), {singular: raw, "id": object_id})
        return json_body(updated)

    def reader(key: str) -> Route:
        async def read_one(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
            meta, body = await read(acl, parse_header(request), {key: request.match_info[key]})
            if body[singular] is None:
                return _not_found(missing, meta)
            return with_meta(body[singular], meta)

        return read_one

    async def list_all(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
        meta, found = await list_(acl, parse_header(request), {})
        return with_meta(found, meta)

    async def remove(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
        await delete(acl, parse_header(request, write=True), {"id": request.match_info["id"]})
        return json_body(True)

    return {"create": create, "update": update, "read": reader("id"), "read_by_name": reader("name"),
            "list": list_all, "delete": remove}


# ---- tokens -----------------------------------------------------------------------------------


async def token_create(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    _, token = await acl.token_set(parse_header(request, write=True), {"token": await _body(request, "Token")})
    return json_body(token)


async def token_update(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    accessor = request.match_info["accessor"]
    raw = await _body(request, "Token")
    if lookup(raw, "AccessorID") and lookup(raw, "AccessorID") != accessor:
        raise BadRequest("Token Accessor ID in URL and payload do not match")
    _, token = await acl.token_set(parse_header(request, write=True), {"token": raw, "accessor": accessor})
    return json_body(token)


async def token_clone(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    raw = await _body(request, "Token")
    body = {"accessor": request.match_info["accessor"], "description": lookup(raw, "Description")}
    _, token = await acl.token_clone(parse_header(request, write=True), body)
    return json_body(token)


async def token_read(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    meta, body = await acl.token_read(parse_header(request), {"accessor": request.match_info["accessor"]})
    if body["token"] is None:
        return _not_found("Requested token does not exist: ACL not found", meta)
    return with_meta(body["token"], meta)


async def token_self(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    meta, token = await acl.token_self(parse_header(request), {})
    return with_meta(token, meta)


async def token_list(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    filters = {"policy": request.query.get("policy", ""), "role": request.query.get("role", "")}
    meta, tokens = await acl.token_list(parse_header(request), filters)
    return with_meta(tokens, meta)


async def token_delete(request: web.Request, acl: ACLEndpoint) -> web.StreamResponse:
    await acl.token_delete(parse_header(request, write=True), {"accessor": request.match_info["accessor"]})
    return json_body(True)


def add(app: web.Application) -> None:
    router = app.router
    router.add_put("/v1/acl/bootstrap", _acl(bootstrap))
    router.add_get("/v1/acl/replication", _acl(replication_status))
    for kind, label, plural in (("policy", "Policy", "policies"), ("role", "Role", "roles")):
        routes = _named_object_routes(kind, label)
        router.add_put(f"/v1/acl/{kind}", _acl(routes["create"]))
        router.add_get(f"/v1/acl/{kind}/name/{{name}}", _acl(routes["read_by_name"]))
        router.add_get(f"/v1/acl/{kind}/{{id}}", _acl(routes["read"]))
        router.add_put(f"/v1/acl/{kind}/{{id}}", _acl(routes["update"]))
        router.add_delete(f"/v1/acl/{kind}/{{id}}", _acl(routes["delete"]))
        router.add_get(f"/v1/acl/{plural}", _acl(routes["list"]))
    router.add_put("/v1/acl/token", _acl(token_create))
    router.add_get("/v1/acl/token/self", _acl(token_self))
    router.add_put("/v1/acl/token/{accessor}/clone", _acl(token_clone))
    router.add_get("/v1/acl/token/{accessor}", _acl(token_read))
    router.add_put("/v1/acl/token/{accessor}", _acl(token_update))
    router.add_delete("/v1/acl/token/{accessor}", _acl(token_delete))
    router.add_get("/v1/acl/tokens", _acl(token_list))

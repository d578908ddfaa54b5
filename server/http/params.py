"""Query parameters and headers -> RequestHeader, with Consul's exact error texts (federation.md §4)."""

from __future__ import annotations

import uuid

from aiohttp import web

from rpc.header import RequestHeader

from ..durations import parse_duration


class BadRequest(Exception):
    """400 with a plain-text message (Consul answers bad query parameters this way)."""


def token_of(request: web.Request) -> str:
    token = request.headers.get("X-Consul-Token", "")
    if not token:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
    return token or request.query.get("token", "")


def _present(request: web.Request, name: str) -> bool:
    return name in request.query


def parse_header(request: web.Request, *, write: bool = False) -> RequestHeader:
    query = request.query
    min_index = 0
    if "index" in query:
        try:
            min_index = int(query["index"])
            if min_index < 0:
                raise ValueError
        except ValueError:
            raise BadRequest("Invalid index") from None
    wait = 0.0
    if "wait" in query:
        try:
            wait = parse_duration(query["wait"])
        except ValueError:
            raise BadRequest("Invalid wait time") from None
    stale = _present(request, "stale")
    consistent = _present(request, "consistent")
    if "max_stale" in query:
        try:
            if parse_duration(query["max_stale"]) > 0:
                stale = True
        except ValueError:
            raise BadRequest(f'Invalid max_stale value "{query["max_stale"]}"') from None
    if stale and consistent:
        raise BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
    cache_control = request.headers.get("Cache-Control", "")
    for directive in filter(None, (d.strip() for d in cache_control.split(","))):
        if directive.startswith("max-age="):
            try:
                int(directive[len("max-age="):])
            except ValueError:
                raise BadRequest("Invalid Cache-Control header.") from None
    return RequestHeader(
        datacenter=query.get("dc", ""),
        token=token_of(request),
        min_query_index=min_index,
        max_query_time=wait,
        allow_stale=stale,
        require_consistent=consistent,
        request_id=uuid.uuid4().hex if write else "",
    )


def flag(request: web.Request, name: str) -> bool:
    """A presence flag such as ?passing (also ?passing=1 / true); ?passing=false is off."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("0", "false", "no")

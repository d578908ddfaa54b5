"""Query parameters and headers -> RequestHeader, with Consul's exact error texts (federation.md §4)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.rpc.header import RequestHeader, new_request_id
from meshfed.server.acl.token import token_of
from meshfed.server.http.filtering import FilterError, Predicate, Schema, compile_filter

# Where the ACL middleware leaves the token a request is checked as (the agent default filled in),
# so that the header forwarded to the leader carries it; without ACLs the sent token travels as is.
EFFECTIVE_TOKEN_KEY: web.RequestKey[str] = web.RequestKey("meshfed_effective_token", str)


class BadRequest(Exception):
    """400 with a plain-text message (Consul answers bad query parameters this way)."""


MAX_INDEX = 2**64 - 1  # Consul's indexes are uint64


def _given(request: web.Request, name: str) -> str:
    """A valued parameter; an empty one (`?index=`) counts as absent, as in Consul."""
    return request.query.get(name, "")


def _is_decimal(text: str, signed: bool = False) -> bool:
    # int() would also take " 5", "1_000" and non-ASCII digits, which Consul (Go) rejects.
    if signed and text[:1] in ("+", "-"):
        text = text[1:]
    return text.isascii() and text.isdigit()


def parse_header(request: web.Request, *, write: bool = False) -> RequestHeader:
    """Checks run in Consul's order (consistency, Cache-Control, wait, index): the first error wins."""
    query = request.query
    stale = "stale" in query
    consistent = "consistent" in query
    max_stale = _given(request, "max_stale")
    if max_stale:
        try:
            if parse_duration(max_stale) > 0:
                stale = True
        except ValueError:
            raise BadRequest(f'Invalid max_stale value "{max_stale}"') from None
    if stale and consistent:
        raise BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
    cache_control = request.headers.get("Cache-Control", "").lower()
    for directive in filter(None, (d.strip() for d in cache_control.split(","))):
        for prefix in ("max-age=", "stale-if-error="):
            if directive.startswith(prefix) and not _is_decimal(directive[len(prefix):], signed=True):
                raise BadRequest("Invalid Cache-Control header.")
    wait = 0.0
    if _given(request, "wait"):
        try:
            wait = parse_duration(query["wait"])
        except ValueError:
            raise BadRequest("Invalid wait time") from None
    min_index = 0
    if _given(request, "index"):
        if not _is_decimal(query["index"]) or int(query["index"]) > MAX_INDEX:
            raise BadRequest("Invalid index")
        min_index = int(query["index"])
    return RequestHeader(
        datacenter=query.get("dc", ""),
        token=request.get(EFFECTIVE_TOKEN_KEY) or token_of(request),
        min_query_index=min_index,
        max_query_time=wait,
        allow_stale=stale,
        require_consistent=consistent,
        request_id=new_request_id() if write else "",
    )


def flag(request: web.Request, name: str) -> bool:
    """A presence flag such as ?passing (also ?passing=1 / true); ?passing=false is off."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("0", "false", "no")


def row_filter(request: web.Request, schema: Schema) -> Predicate | None:
    """`?filter=` compiled against the endpoint's rows (None without one). Compiled before the
    read, so a bad expression is a 400 at once, not after a blocking query's wait."""
    expression = request.query.get("filter", "")
    if not expression:
        return None
    try:
        return compile_filter(expression, schema)
    except FilterError as exc:
        raise BadRequest(f"Failed to create boolean expression evaluator: {exc}") from None


def row_selection(request: web.Request) -> tuple[str, tuple[str, ...]]:
    """Every parameter `row_filter` and `node_meta_filter` read: what a shared answer's shape key
    must name (server/http/respond.py `shared_with_meta`)."""
    return request.query.get("filter", ""), tuple(request.query.getall("node-meta", []))


def keep(rows: list[Any], predicate: Predicate | None) -> list[Any]:
    return rows if predicate is None else [row for row in rows if predicate(row)]


def node_meta_filter(request: web.Request, *path: str) -> Predicate | None:
    """Consul's `?node-meta=key:value` (repeatable; every pair must match) as a test on the node
    meta map found at `path` in a row (None without the parameter). A pair without `:` asks for
    an empty value, as Consul's parser reads it."""
    pairs = [pair.partition(":") for pair in request.query.getall("node-meta", [])]
    if not pairs:
        return None
    wanted = {key: value for key, _, value in pairs}

    def matches(row: Any) -> bool:
        meta: Any = row
        for key in path:
            meta = meta.get(key) if isinstance(meta, dict) else None
        meta = meta or {}
        return all(meta.get(key) == value for key, value in wanted.items())

    return matches


def both(*predicates: Predicate | None) -> Predicate | None:
    """The predicates given, all of which must hold (None when none is given)."""
    given = [p for p in predicates if p is not None]
    if not given:
        return None
    return lambda row: all(p(row) for p in given)

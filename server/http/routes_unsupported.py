"""Consul APIs meshfed does not implement, answered with a 404 that says so.

A Consul client calling these would otherwise get aiohttp's bare "404: Not Found", which py-consul
turns into `None` (a missing key, no session): indistinguishable from an empty result. The body
names the API and that meshfed lacks it by design. README lists what is covered.
"""

from __future__ import annotations

from aiohttp import web

from meshfed.server.http.api import api_of
from meshfed.server.http.respond import meta_headers

# path prefix -> what Consul serves there
UNSUPPORTED = {
    "/v1/kv": "the KV store",
    "/v1/session": "sessions",
    "/v1/event": "user events",
    "/v1/query": "prepared queries",
    "/v1/txn": "transactions",
}
METHODS = ("GET", "PUT", "POST", "DELETE")


def pattern_of(prefix: str) -> str:
    """The route pattern: the prefix itself and everything under it."""
    return prefix + "{tail:(/.*)?}"


def canonical_of(prefix: str) -> str:
    """The pattern as aiohttp names the route (its regex dropped): the ACL table's key."""
    return prefix + "{tail}"


def message(prefix: str) -> str:
    return (f"Unsupported endpoint: meshfed does not implement Consul's {UNSUPPORTED[prefix]} API "
            f"({prefix}/); see README \"Consul API coverage\"")


def _handler(prefix: str):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        api = api_of(request)
        headers = meta_headers(api.queries.meta(api.state.index()))
        return web.Response(status=404, text=message(prefix), headers=headers)

    return handler


def add(app: web.Application) -> None:
    for prefix in UNSUPPORTED:
        for method in METHODS:
            app.router.add_route(method, pattern_of(prefix), _handler(prefix))

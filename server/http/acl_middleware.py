"""ACL enforcement in front of every HTTP handler (installed only when `acl.enabled`).

For each request: find the route's declaration (`server/acl/permissions.py`), resolve the token
(sent token, else `acl.tokens.default`, else anonymous), check the declared needs, run the
handler, then filter list answers the declaration marks. A 403 carries Consul's text; the error
middleware outside this one maps the `RPCError` and adds the index headers.

The resolved identity and the effective token are left on the request: `parse_header` puts the
token into the RPC header, so a follower forwarding the write hands the leader the caller's
token, and the leader checks it again (`server/acl/rpc_permissions.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web

from meshfed.fsm.acl.denial import PERMISSION_DENIED
from meshfed.rpc.errors import RPCError
from meshfed.server.acl.filters import ResultFilter, keeps_everything
from meshfed.server.acl.needs import enforce
from meshfed.server.acl.permissions import RouteFacts, declaration_of, route_key
from meshfed.server.acl.resolver import ACLResolver, Identity, state_reader
from meshfed.server.acl.token import effective_token, token_of
from meshfed.server.http.api import Api, read_json
from meshfed.server.http.filtered_once import FilteredOnce
from meshfed.server.http.params import EFFECTIVE_TOKEN_KEY

IDENTITY_KEY: web.RequestKey[Identity] = web.RequestKey("meshfed_acl_identity", Identity)
FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"
FILTERED = FilteredOnce()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def identity_of(request: web.Request) -> Identity | None:
    """The caller's identity, for handlers that filter or decide more themselves (None: ACLs off)."""
    return request.get(IDENTITY_KEY)


def _filtered(response: web.StreamResponse, identity: Identity, keep: ResultFilter) -> web.StreamResponse:
    if not isinstance(response, web.Response) or response.status != 200 or not isinstance(response.body, bytes):
        return response
    if keeps_everything(identity, keep):
        return response  # nothing to drop: skip decoding the body (3 MB for 1,000 DCs of gateways)
    body, removed = FILTERED.apply(response.body, identity, keep)
    if removed:
        response.body = body
        response.headers[FILTERED_HEADER] = "true"
    return response


def acl_middleware(api: Api, resolver: ACLResolver | None = None) -> Callable[..., Awaitable[web.StreamResponse]]:
    config = api.wan.config
    resolver = resolver or ACLResolver(state_reader(api.state), config.acl, config.datacenter, observer=api.metrics)
    default_token = config.acl.tokens.default

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            return await handler(request)  # 404 / 405: nothing to protect
        method, pattern = route_key(request)
        declaration = declaration_of(method, pattern)
        if declaration is None:
            # A route without a declaration fails closed (the route-table test names it).
            api.metrics.acl_denied(pattern)
            raise RPCError(grpc.StatusCode.PERMISSION_DENIED, PERMISSION_DENIED)
        token = effective_token(token_of(request), default_token)
        request[EFFECTIVE_TOKEN_KEY] = token
        if declaration.needs is None and declaration.filter is None:
            return await handler(request)
        identity = await resolver.resolve_async(token)
        request[IDENTITY_KEY] = identity
        if declaration.needs is not None:
            body = await read_json(request) if declaration.reads_body else None
            facts = RouteFacts(request, body, api.state, config.datacenter, config.node_name)
            enforce(identity, declaration.needs(facts), on_denied=lambda: api.metrics.acl_denied(pattern))
        response = await handler(request)
        if declaration.filter is not None:
            response = _filtered(response, identity, declaration.filter)
        return response

    return middleware

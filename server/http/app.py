"""The HTTP API application: routes, error mapping, and the query-meta headers on every answer.

Handlers translate HTTP to the same endpoint calls the gRPC service makes, so forwarding,
blocking and consistency behave identically whichever door a request came in by. Errors never
leak a traceback: bad input is a 400 naming the field, RPC status codes map as DESIGN §6 says,
and every response, errors included, carries X-Consul-Index >= 1 (py-consul requires it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from meshfed.fsm.state import TABLES
from meshfed.rpc.errors import RPCError
from meshfed.server.http import (
    routes_acl,
    routes_agent,
    routes_agent_services,
    routes_catalog,
    routes_config,
    routes_connect,
    routes_connect_ca,
    routes_health,
    routes_intentions,
    routes_internal,
    routes_operator,
    routes_peering,
    routes_snapshot,
    routes_unsupported,
)
from meshfed.server.http.acl_middleware import acl_middleware
from meshfed.server.http.api import API_KEY, Api
from meshfed.server.http.decode import DecodeError
from meshfed.server.http.json_guard import printable
from meshfed.server.http.params import BadRequest
from meshfed.server.http.respond import meta_headers
from meshfed.server.http.rpc_status import http_status

log = logging.getLogger(__name__)


def _fallback_headers(api: Api) -> dict[str, str]:
    return meta_headers(api.queries.meta(api.state.index(*TABLES)))


def _text(status: int, message: str, api: Api) -> web.Response:
    # A message may quote client input; escape what UTF-8 cannot carry rather than fail the answer.
    return web.Response(status=status, text=printable(message), headers=_fallback_headers(api))


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    api = request.app[API_KEY]
    try:
        return await handler(request)
    except BadRequest as exc:
        return _text(400, str(exc), api)
    except DecodeError as exc:
        return _text(400, str(exc), api)
    except RPCError as exc:
        status = http_status(exc.code)
        if status >= 500:
            log.warning("HTTP %s %s answered %d: RPC %s: %s", request.method, request.path, status,
                        exc.code.name, printable(exc.message))
        return _text(status, exc.message, api)
    except web.HTTPException as exc:
        if exc.status >= 400 and "X-Consul-Index" not in exc.headers:
            exc.headers.update(_fallback_headers(api))
        raise
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return _text(500, "internal server error (see the server log)", api)


def build_app(api: Api) -> web.Application:
    middlewares = [error_middleware]
    if api.wan.config.acl.enabled:
        middlewares.append(acl_middleware(api, api.acl_resolver))  # inside the error middleware: its 403s get index headers
    app = web.Application(middlewares=middlewares, client_max_size=4 * 1024 * 1024)
    app[API_KEY] = api
    routes_internal.add(app)
    routes_catalog.add(app)
    routes_connect.add(app)
    routes_agent.add(app)
    routes_operator.add(app)
    routes_agent_services.add(app)
    routes_health.add(app)
    routes_config.add(app)
    routes_intentions.add(app)
    routes_connect_ca.add(app)
    routes_acl.add(app)
    routes_snapshot.add(app)
    routes_peering.add(app)
    routes_unsupported.add(app)
    return app

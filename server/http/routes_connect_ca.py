"""GET /v1/connect/ca/roots and GET|PUT /v1/connect/ca/configuration (reference connect-data.md §C.1),
and the agent's leaf and roots (`/v1/agent/connect/ca/leaf/<service>`, `/v1/agent/connect/ca/roots`,
reference/mesh-dataplane.md §2.1).

Thin: query parameters -> the ConnectCA endpoint (which routes, blocks and validates) -> Consul's
JSON. As in Consul, the roots answer is public fields only, `?pem=true` answers the certificate
chain instead, and a configuration PUT answers 200 with an empty body (py-consul's
`update_configuration` only looks at the status). Other methods get aiohttp's 405 with `Allow`.
"""

from __future__ import annotations

import datetime

from aiohttp import web

from meshfed.fsm.consul_formats.timestamps import format_rfc3339
from meshfed.rpc.header import QueryMeta
from meshfed.server import ca
from meshfed.server.http.api import api_of, read_json
from meshfed.server.http.params import BadRequest, parse_header
from meshfed.server.http.respond import meta_headers, with_meta

PEM_CONTENT_TYPE = "application/pem-certificate-chain"  # RFC 8555, as Consul answers
# Go's strconv.ParseBool, which Consul uses for ?pem (py-consul sends pem=0 / pem=1).
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(name: str, value: str) -> bool:
    """An empty value is false, like an absent one; anything ParseBool refuses is a 400."""
    if value == "" or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise BadRequest(f"The '{name}' query parameter must be a boolean value")


async def roots(request: web.Request) -> web.Response:
    header = parse_header(request)
    pem = parse_bool("pem", request.query.get("pem", ""))
    meta, body = await api_of(request).connect_ca.roots(header, {})
    indexed_roots = body["roots"]
    if not pem:
        return with_meta(indexed_roots, meta)
    return web.Response(
        body=ca.pem_chain(indexed_roots["Roots"]).encode(),
        content_type=PEM_CONTENT_TYPE,
        headers=meta_headers(meta),
    )


async def get_configuration(request: web.Request) -> web.Response:
    meta, body = await api_of(request).connect_ca.get_configuration(parse_header(request), {})
    return with_meta(body["config"], meta)


async def set_configuration(request: web.Request) -> web.Response:
    header = parse_header(request, write=True)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("Request decode failed: the body must be a JSON object with Provider and Config")
    meta, _ = await api_of(request).connect_ca.set_configuration(header, body)
    return web.Response(status=200, headers=meta_headers(meta))


async def leaf(request: web.Request) -> web.Response:
    """Consul's IssuedCert; `X-Cache` says whether this server had it, the index is the leaf's."""
    api = api_of(request)
    if api.leaves is None:
        raise BadRequest("leaf certificates are not served by this server")
    entry, hit = await api.leaves.get(request.match_info["service"], parse_header(request))
    issued = entry.issued
    body = {
        "SerialNumber": issued["serial"],
        "CertPEM": issued["cert"],
        "PrivateKeyPEM": issued["private_key"],
        "Service": issued["service"],
        "ServiceURI": issued["service_uri"],
        "ValidAfter": _rfc3339(issued["valid_after"]),
        "ValidBefore": _rfc3339(issued["valid_before"]),
        "CreateIndex": entry.index,
        "ModifyIndex": entry.index,
    }
    response = with_meta(body, QueryMeta(index=entry.index, known_leader=True))
    response.headers["X-Cache"] = "HIT" if hit else "MISS"
    return response


def _rfc3339(seconds: float) -> str:
    return format_rfc3339(datetime.datetime.fromtimestamp(seconds, datetime.UTC))


def add(app: web.Application) -> None:
    app.router.add_get("/v1/agent/connect/ca/roots", roots)
    app.router.add_get("/v1/agent/connect/ca/leaf/{service}", leaf)
    app.router.add_get("/v1/connect/ca/roots", roots)
    app.router.add_get("/v1/connect/ca/configuration", get_configuration)
    app.router.add_put("/v1/connect/ca/configuration", set_configuration)

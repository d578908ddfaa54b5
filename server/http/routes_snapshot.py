"""/v1/snapshot: Consul's backup API (server/endpoints/snapshot.py has the rules).

`GET` answers the backup file as a binary body with X-Consul-Index set to the state's index;
`?stale` lets any server answer from its own state without a barrier. `PUT` takes a backup file as
the body and replaces the datacenter's state; a corrupt or incompatible file is a 400 naming the
problem, with nothing changed. `?dc` may only name this datacenter: a backup is megabytes and
server RPC is not the road for it, so an operator asks a server of the other datacenter directly.
"""

from __future__ import annotations

from aiohttp import web

from meshfed.fsm.restore import MAX_BACKUP_BYTES
from meshfed.server.endpoints.snapshot import SnapshotEndpoint
from meshfed.server.http.api import api_of
from meshfed.server.http.params import BadRequest
from meshfed.server.http.respond import meta_headers

READ_CHUNK = 256 * 1024


def _endpoint(request: web.Request) -> SnapshotEndpoint:
    endpoint = api_of(request).snapshots
    if endpoint is None:
        raise web.HTTPNotFound(text="snapshots are not served by this server")
    return endpoint


def _local_only(request: web.Request) -> None:
    api = api_of(request)
    dc = request.query.get("dc", "")
    if dc and dc.lower() != api.datacenter.lower():
        raise BadRequest(f"dc: snapshots of datacenter {dc!r} are served by its own servers; this is "
                         f"{api.datacenter!r}: use -http-addr of a server there")


async def save(request: web.Request) -> web.Response:
    api = api_of(request)
    _local_only(request)
    stale = "stale" in request.query
    if stale and "consistent" in request.query:
        raise BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
    index, blob = await _endpoint(request).save(stale=stale)
    headers = meta_headers(api.queries.meta(index, "stale" if stale else ""))
    return web.Response(body=blob, content_type="application/octet-stream", headers=headers)


async def _body(request: web.Request) -> bytes:
    """The whole body, streamed past the app's 4 MiB JSON limit up to the largest backup."""
    limit = MAX_BACKUP_BYTES + 64
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"snapshot: body of {request.content_length} bytes; at most {limit}")
    parts, size = [], 0
    while chunk := await request.content.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"snapshot: body over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def restore(request: web.Request) -> web.Response:
    api = api_of(request)
    _local_only(request)
    index = await _endpoint(request).restore(await _body(request))
    return web.Response(status=200, headers=meta_headers(api.queries.meta(index)))


def add(app: web.Application) -> None:
    app.router.add_get("/v1/snapshot", save)
    app.router.add_put("/v1/snapshot", restore)

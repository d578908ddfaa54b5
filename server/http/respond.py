"""Responses with Consul's query-meta headers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from meshfed.rpc.header import QueryMeta


def meta_headers(meta: QueryMeta) -> dict[str, str]:
    headers = {
        "X-Consul-Index": str(max(1, meta.index)),
        "X-Consul-KnownLeader": "true" if meta.known_leader else "false",
        "X-Consul-LastContact": str(max(0, int(meta.last_contact * 1000))),
        "X-Consul-Query-Backend": "blocking-query",
    }
    if meta.consistency_level:
        headers["X-Consul-Effective-Consistency"] = meta.consistency_level
    return headers


def json_body(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(value, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def with_meta(value: Any, meta: QueryMeta, status: int = 200) -> web.Response:
    return json_body(value, status, meta_headers(meta))

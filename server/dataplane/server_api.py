"""How the data plane (the mesh gateway and the Connect proxy) talks to meshfed servers: their
HTTP API only, like a Consul agent's proxies, so either can run on any host.

`ServerAPI` rotates to the next configured server when one fails (a gateway or proxy keeps working
while servers restart one by one); `follow` keeps a blocking query open and hands every new answer
to a callback, keeping the last good answer (the callback is simply not called) while the servers
are unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from meshfed.fsm.consul_formats.durations import parse_duration

log = logging.getLogger(__name__)

BLOCKING_WAIT = "60s"
RETRY_DELAY = 1.0


class ServerAPI:
    """HTTP calls to the local servers, rotating to the next one on failure."""

    def __init__(self, session: aiohttp.ClientSession, addrs: Sequence[str], token: str) -> None:
        self._session = session
        self._addrs = [a if "://" in a else f"http://{a}" for a in addrs]
        self._next = 0
        self._headers = {"X-Consul-Token": token} if token else {}

    async def request(self, method: str, path: str, *, json: Any = None, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        base = self._addrs[self._next % len(self._addrs)]
        try:
            async with self._session.request(method, base + path, json=json, headers=self._headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                body = await response.json(content_type=None) if response.content_length != 0 else None
                return response.status, dict(response.headers), body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self._next += 1  # try the next server next time
            raise


async def follow(api: ServerAPI, path: str, what: str, apply: Callable[[Any], None],
                 on_failure: Callable[[], None] | None = None, wait: str = BLOCKING_WAIT) -> None:
    """Run a blocking query on `path` for ever, calling `apply(body)` with each answer."""
    index = 0
    separator = "&" if "?" in path else "?"
    while True:
        try:
            status, headers, body = await api.request(
                "GET", f"{path}{separator}index={index}&wait={wait}", timeout=parse_duration(wait) + 15)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body}")
            new_index = int(headers.get("X-Consul-Index", "0"))
            index = 0 if new_index < index else new_index  # reset when the index goes backwards
            apply(body)
        except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
            if on_failure is not None:
                on_failure()
            log.warning("refreshing %s from the servers failed (keeping the last answer): %s", what, exc)
            index = 0
            await asyncio.sleep(RETRY_DELAY)

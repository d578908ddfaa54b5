"""How the data plane (the mesh gateway and the Connect proxy) talks to meshfed servers: their
HTTP API only, like a Consul agent's proxies, so either can run on any host.

`ServerAPI` rotates to the next configured server when one fails (a gateway or proxy keeps working
while servers restart one by one); `follow` keeps a blocking query open and hands every new answer
to a callback, keeping the last good answer (the callback is simply not called) while the servers
are unreachable. Both treat an ACL refusal (403) apart from a failure: `Denied`, logged as an
error that quotes the servers by `DenialLog`, retried with a backoff.
"""

from __future__ import annotations

import asyncio
import json as _json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshfed.fsm.consul_formats.durations import parse_duration

log = logging.getLogger(__name__)

BLOCKING_WAIT = "60s"
RETRY_DELAY = 1.0
FILTERED_POLL_MAX = 30.0
DENIED_RETRY_MAX = 30.0
DENIED_LOG_EVERY = 10
FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"


class Denied(RuntimeError):
    """The servers answered 403: the token is missing, unknown or lacks a permission. The same on
    every server, and retrying at network speed fixes nothing."""


class DenialLog:
    """One run of ACL refusals of one loop: logs the 1st and every 10th as an error (the line comes
    from `message(server_text)`, which should quote the server: its `Permission denied ...` names
    the missing permission), says when the run ends, and gives the delay before the next try
    (1 s doubling to 30 s), so a token fixed on the servers is picked up without a restart."""

    def __init__(self, what: str, message: Callable[[str], str] | None = None) -> None:
        self.what = what
        self._message = message or (lambda text: f"{what} refused by the servers' ACLs: {text.strip()[:300]}")
        self.count = 0

    def refused(self, server_text: str) -> float:
        self.count += 1
        if self.count == 1 or self.count % DENIED_LOG_EVERY == 0:
            repeats = f" (refused {self.count} times in a row)" if self.count > 1 else ""
            log.error("%s%s", self._message(server_text), repeats)
        return min(DENIED_RETRY_MAX, RETRY_DELAY * 2 ** min(self.count - 1, 5))

    def succeeded(self) -> None:
        if self.count:
            log.info("%s accepted again after %d refusal(s)", self.what, self.count)
        self.count = 0


class ServerAPI:
    """HTTP calls to the local servers, rotating to the next one on failure."""

    def __init__(self, session: aiohttp.ClientSession, addrs: Sequence[str], token: str) -> None:
        self._session = session
        self._addrs = [a if "://" in a else f"http://{a}" for a in addrs]
        self._next = 0
        self._headers = {"X-Consul-Token": token} if token else {}

    async def request(self, method: str, path: str, *, json: Any = None, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        """(status, headers, body): the JSON body of a 200, the text of anything else (a 403's
        text is the servers' `Permission denied ...`, which names the missing permission)."""
        base = self._addrs[self._next % len(self._addrs)]
        try:
            async with self._session.request(method, base + path, json=json, headers=self._headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                text = await response.text()
                body = _json.loads(text) if response.status == 200 and text.strip() else text or None
                return response.status, dict(response.headers), body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self._next += 1  # try the next server next time
            raise


async def follow(api: ServerAPI, path: str, what: str, apply: Callable[[Any], bool | None],
                 on_failure: Callable[[], None] | None = None, wait: str = BLOCKING_WAIT,
                 denials: DenialLog | None = None, filtered_advice: str = "", changes_since: str = "") -> None:
    """Run a blocking query on `path` for ever, calling `apply(body)` with each answer.

    A 403 goes to `denials` (logged as an error, retried with a backoff). An answer the servers'
    ACLs filtered (`X-Consul-Results-Filtered-By-ACLs`) is logged once with `filtered_advice`: an
    empty route table would otherwise look like a quiet datacenter; it is asked again without
    blocking (1 s, 2 s, ... up to 30 s apart) until the token sees everything.

    `changes_since`: the name of a delta parameter the route understands (meshfed's
    `changes-since`). The first read, and every read after an error, a filtered answer, an index
    that went backwards or an `apply` that returns False (the servers asked for a resync), is the
    full `path`; the others add `changes_since=<last index>` and get only what changed since."""
    index = 0
    separator = "&" if "?" in path else "?"
    denials = denials or DenialLog(f"reading {what}")
    filtered_logged = False
    filtered_polls = 0
    while True:
        try:
            delta = f"{changes_since}={index}&" if changes_since and index > 0 else ""
            status, headers, body = await api.request(
                "GET", f"{path}{separator}{delta}index={index}&wait={wait}", timeout=parse_duration(wait) + 15)
            if status == 403:
                raise Denied(str(body or ""))
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body}")
            denials.succeeded()
            if headers.get(FILTERED_HEADER, "").lower() == "true" and not filtered_logged:
                filtered_logged = True
                log.warning("%s: the servers' ACLs hid some of the answer from this token%s", what,
                            f"; {filtered_advice}" if filtered_advice else "")
            new_index = int(headers.get("X-Consul-Index", "0"))
            index = 0 if new_index < index else new_index  # reset when the index goes backwards
            if apply(body) is False:
                index = 0  # the next read is the full answer, at once
            if headers.get(FILTERED_HEADER, "").lower() == "true":
                # A token that cannot see everything yet (e.g. its rights are still replicating)
                # would otherwise wait a whole blocking wait on an index that a change of rights
                # never moves: ask again unblocked, less and less often.
                filtered_polls += 1
                index = 0
                await asyncio.sleep(min(FILTERED_POLL_MAX, RETRY_DELAY * filtered_polls))
            else:
                filtered_polls = 0
        except Denied as exc:
            if on_failure is not None:
                on_failure()
            index = 0
            await asyncio.sleep(denials.refused(str(exc)))
        except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
            if on_failure is not None:
                on_failure()
            log.warning("refreshing %s from the servers failed (keeping the last answer): %s", what, exc)
            index = 0
            await asyncio.sleep(RETRY_DELAY)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def start_admin(bind: tuple[str, int], routes: dict[str, Handler]) -> web.AppRunner:
    """The small admin HTTP listener of a data-plane process (GET routes only: /metrics and the
    like); the caller cleans the runner up on shutdown."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, *bind, reuse_address=True).start()
    return runner


def metrics_handler(registry: CollectorRegistry) -> Handler:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics

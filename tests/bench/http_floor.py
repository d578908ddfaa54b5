"""What answering N parked HTTP requests at once costs with no server logic at all: the floor
under bench_waiters' wake figures, measured in the same run by the same client.

Two floors, each a bare server in a process of its own, holding N `GET /wait` requests until
`GET /fire` and then answering every one with the same prebuilt body and Consul's query headers:
- `aiohttp`: meshfed's HTTP stack (aiohttp's web server: one handler task per request, a
  `web.Response` per answer), with nothing of meshfed in it;
- `asyncio`: bare asyncio protocols writing prebuilt bytes to each transport, the floor of any
  Python server on this host.
The gap between meshfed and the first is meshfed's own work per answer; the gap between the two
floors is the HTTP library's.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiohttp import web

from .common import summarize_seconds
from .raw_waiters import open_waiters

FLOOR_ADDRESS = "127.0.206.1"
FLOOR_PORT = 8500
BODY = json.dumps({"consul": [], "web": ["v1"]}, separators=(",", ":")).encode()
HEADERS = {"X-Consul-Index": "7", "X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0",
           "X-Consul-Query-Backend": "blocking-query"}
RAW_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
    + b"".join(f"{k}: {v}\r\n".encode() for k, v in HEADERS.items())
    + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY
)


def _aiohttp_server(ready: Connection) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        state: dict[str, Any] = {"fired": loop.create_future(), "parked": 0}

        async def wait(_: web.Request) -> web.Response:
            state["parked"] += 1
            await asyncio.shield(state["fired"])
            return web.Response(body=BODY, content_type="application/json", headers=HEADERS)

        async def fire(_: web.Request) -> web.Response:
            state["fired"].set_result(None)
            state["fired"], state["parked"] = loop.create_future(), 0
            return web.Response(text="fired")

        async def parked(_: web.Request) -> web.Response:
            return web.Response(text=str(state["parked"]))

        app = web.Application()
        app.router.add_get("/wait", wait)
        app.router.add_get("/fire", fire)
        app.router.add_get("/parked", parked)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, FLOOR_ADDRESS, FLOOR_PORT, backlog=4096).start()
        ready.send(True)
        await asyncio.Event().wait()

    asyncio.run(main())


def _asyncio_server(ready: Connection) -> None:
    async def main() -> None:
        parked: list[asyncio.Transport] = []

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                if data.startswith(b"GET /fire"):
                    for transport in parked:
                        transport.write(RAW_ANSWER)
                    parked.clear()
                    self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfired")
                elif data.startswith(b"GET /parked"):
                    count = str(len(parked)).encode()
                    self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(count), count))
                else:
                    parked.append(self.transport)

        await asyncio.get_running_loop().create_server(Protocol, FLOOR_ADDRESS, FLOOR_PORT, backlog=4096)
        ready.send(True)
        await asyncio.Event().wait()

    asyncio.run(main())


SERVERS = {"aiohttp": _aiohttp_server, "asyncio": _asyncio_server}


async def _round(waiters: int, park_timeout: float, wake_timeout: float) -> dict[str, Any]:
    base = f"http://{FLOOR_ADDRESS}:{FLOOR_PORT}"
    futures = await open_waiters([(FLOOR_ADDRESS, FLOOR_PORT)], "/wait", waiters)
    async with aiohttp.ClientSession() as control:
        started = time.monotonic()
        parked = 0
        while parked < waiters and time.monotonic() - started < park_timeout:
            async with control.get(base + "/parked") as response:
                parked = int(await response.text())
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        sent = time.monotonic()
        async with control.get(base + "/fire") as response:
            await response.read()
    done, pending = await asyncio.wait(futures, timeout=wake_timeout)
    answers = [f.result() for f in done]
    return {
        "waiters": waiters,
        "parked": parked,
        "woken": sum(1 for a in answers if a.status == "200"),
        "not_answered": len(pending),
        "wake_after_send": summarize_seconds([a.arrived - sent for a in answers if a.status == "200"]),
    }


def floor(kind: str, waiters: int, park_timeout: float = 60.0, wake_timeout: float = 30.0) -> dict[str, Any]:
    """One round against the `kind` floor server, started and stopped here."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=SERVERS[kind], args=(theirs,), daemon=True)
    server.start()
    try:
        if not ours.poll(30):
            raise RuntimeError(f"the {kind} floor server did not start")
        return asyncio.run(_round(waiters, park_timeout, wake_timeout))
    finally:
        server.kill()
        server.join(5)

"""Thousands of blocking GETs held by one light client: one asyncio Protocol per connection.

Why not aiohttp's client: taking 10,000 answers off one event loop through aiohttp's client costs
about 100 µs each, so the last answer's arrival time measured a second of client work, not the
server's. Here a connection costs one `data_received` call: the arrival time is stamped on the
first bytes, and only the status line, `X-Consul-Index` and `Content-Length` are read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    arrived: float = 0.0  # time.monotonic() of the first byte of the answer
    status: str = ""  # "200", "503", ... or the name of the failure ("ConnectionResetError")
    index: int = 0  # X-Consul-Index
    text: str = ""  # the first 80 characters of a non-200 body


@dataclass
class _Parsed:
    head: bytes = b""
    body: bytearray = field(default_factory=bytearray)
    length: int = -1


class _Waiter(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future[Answer]) -> None:
        self._request = request
        self._done = done
        self._answer = Answer()
        self._buffer = bytearray()
        self._parsed = _Parsed()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self._answer.arrived:
            self._answer.arrived = time.monotonic()
        parsed = self._parsed
        if parsed.length < 0:
            self._buffer += data
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            parsed.head = bytes(self._buffer[:end])
            parsed.body += self._buffer[end + 4:]
            self._read_head(parsed.head)
        else:
            parsed.body += data
        if len(parsed.body) >= parsed.length:
            if self._answer.status != "200":
                self._answer.text = bytes(parsed.body[:80]).decode(errors="replace")
            self._finish()

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        self._answer.status = lines[0].split(b" ", 2)[1].decode()
        self._parsed.length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"x-consul-index":
                self._answer.index = int(value)
            elif name == b"content-length":
                self._parsed.length = int(value)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._answer.arrived = self._answer.arrived or time.monotonic()
            self._answer.status = self._answer.status or (type(exc).__name__ if exc else "ConnectionClosed")
            self._finish()

    def _finish(self) -> None:
        # The connection stays open, as a client's keep-alive connection would: closing it here
        # would add the server's connection teardown to the wake burst being measured.
        if not self._done.done():
            self._done.set_result(self._answer)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_waiters(targets: list[tuple[str, int]], path: str, count: int,
                       connect_concurrency: int = 500) -> list[asyncio.Future[Answer]]:
    """Open `count` connections round-robin over `targets` (host, port), each sending one GET of
    `path`; returns one future per waiter, resolved with its answer. Connecting is bounded so a
    listen backlog is not overrun (an overrun costs a 1 s SYN retry, not a server fault)."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Answer]] = []
    gate = asyncio.Semaphore(connect_concurrency)

    async def one(host: str, port: int) -> None:
        done: asyncio.Future[Answer] = loop.create_future()
        futures.append(done)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        async with gate:
            try:
                await loop.create_connection(lambda: _Waiter(request, done), host, port)
            except OSError as exc:
                done.set_result(Answer(arrived=time.monotonic(), status=type(exc).__name__))

    await asyncio.gather(*(one(*targets[i % len(targets)]) for i in range(count)))
    return futures

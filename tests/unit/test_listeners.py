"""A port that cannot be bound ends the start with one line naming the address (server/listeners.py),
which `meshfed agent` prints instead of a traceback."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.codec import MAX_MESSAGE_BYTES
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.config.settings import Config, Ports
from meshfed.server.listeners import StartupError, start_http, start_rpc
from tests.ports import free_port


class NoPeers:
    methods: frozenset[str] = frozenset()

    def __call__(self, method: str, dns_names: list[str]) -> None:
        return None


def test_a_busy_port_is_a_startup_error_that_names_it() -> None:
    async def scenario() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", free_port()))
            busy.listen()
            port = busy.getsockname()[1]
            cfg = Config(node_name="s1", bind_addr="127.0.0.1", ports=Ports(http=port, server=port))
            with pytest.raises(StartupError, match=f"cannot bind the HTTP port 127.0.0.1:{port}"):
                await start_http(cfg, web.Application())
            with pytest.raises(StartupError, match=f"cannot bind the server RPC port 127.0.0.1:{port}"):
                await start_rpc(cfg, {}, observe=lambda *a: None, authorize=None, peer_check=NoPeers())

    asyncio.run(scenario())


def test_a_free_port_is_bound_and_served() -> None:
    async def scenario() -> None:
        port = free_port()
        cfg = Config(node_name="s1", bind_addr="127.0.0.1", ports=Ports(server=port))
        server, address = await start_rpc(cfg, {}, observe=lambda *a: None, authorize=None, peer_check=NoPeers())
        try:
            assert address == f"127.0.0.1:{port}"
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        finally:
            await server.stop(None)

    asyncio.run(scenario())


@contextlib.asynccontextmanager
async def serving(handlers: dict[str, Any]) -> AsyncIterator[tuple[str, ConnectionPool]]:
    """`handlers` on the RPC port exactly as the agent starts it, and a client pool to call it."""
    cfg = Config(node_name="s1", bind_addr="127.0.0.1", ports=Ports(server=free_port()))
    server, address = await start_rpc(cfg, handlers, observe=lambda *a: None, authorize=None, peer_check=NoPeers())
    pool = ConnectionPool()
    try:
        yield address, pool
    finally:
        await pool.close()
        await server.stop(None)


def test_a_burst_of_calls_the_server_picks_up_slowly_is_served_not_cancelled() -> None:
    """gRPC core cancels calls that wait in its queue, not yet picked up by the application, past
    a backlog of 1,000 by default (3,000 at most). A follower forwarding thousands of blocking
    queries while the leader's event loop is busy hit that: clients got a bare CANCELLED."""
    calls, busy = 5000, 0.0005

    async def slow(header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        started = time.perf_counter()
        while time.perf_counter() - started < busy:  # the event loop picks up the next call late
            pass
        await asyncio.sleep(1.0)
        return QueryMeta(), "ok"

    async def scenario() -> None:
        async with serving({"Test/Slow": slow}) as (address, pool):
            outcomes = await asyncio.gather(
                *(pool.call(address, "Test/Slow", RequestHeader(), None, timeout=120) for _ in range(calls)),
                return_exceptions=True)
        failures = collections.Counter(str(o) for o in outcomes if isinstance(o, BaseException))
        assert not failures, failures

    asyncio.run(scenario())


def test_the_rpc_port_takes_messages_as_large_as_the_codec_allows() -> None:
    """gRPC servers refuse messages over 4 MiB unless told otherwise, while the pool sends and the
    codec decodes up to MAX_MESSAGE_BYTES: a forwarded request or a peering stream message between
    the two was refused with RESOURCE_EXHAUSTED, which HTTP answers as 429 "slow down"."""

    async def echo_size(header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return QueryMeta(), len(body)

    async def scenario() -> None:
        async with serving({"Test/Size": echo_size}) as (address, pool):
            body = b"x" * (MAX_MESSAGE_BYTES - 1024)
            _, size = await pool.call(address, "Test/Size", RequestHeader(), body, timeout=30)
            assert size == len(body)

    asyncio.run(scenario())

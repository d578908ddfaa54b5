"""What the asyncio unit tests share: a scenario run with a bound (a hung test fails, it does not
stall the suite) and a real gRPC server on a kernel-chosen loopback port with a client pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable

import grpc

from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.service import RPCService


def run(scenario: Awaitable[None], seconds: float = 20.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario, seconds)

    asyncio.run(bounded())


@contextlib.asynccontextmanager
async def serving(service: RPCService) -> AsyncIterator[tuple[str, ConnectionPool]]:
    """`service` on 127.0.0.1:<free port>, and a pool to call it; both closed afterwards."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([service])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    pool = ConnectionPool()
    try:
        yield f"127.0.0.1:{port}", pool
    finally:
        await pool.close()
        await server.stop(grace=None)

"""Bidirectional streams end to end: a real grpc.aio server on 127.0.0.1 (ephemeral port) serving
RPCService with StreamMethods, opened through ConnectionPool.open_stream. Pins that the first
message is checked like a unary call, handler errors cross with their code and message (never
a traceback), messages flow both ways, and either side's cancellation ends the other cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.errors import RPCError, invalid
from meshfed.rpc.header import RequestHeader
from meshfed.rpc.service import RPCService
from meshfed.rpc.stream import Send, StreamMethod, outbox, relay
from tests import aio
from tests.aio import run

ENDED: list[str] = []


async def echo(header: RequestHeader, first: Any, incoming: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield {"first": first, "token": header.token}
    try:
        async for message in incoming:
            if message == "fail":
                raise invalid("Message: fail is refused")
            if message == "boom":
                raise KeyError("secret internal detail")
            yield message
        yield "client done"
    finally:
        ENDED.append("echo")


async def ticker(header: RequestHeader, first: Any, incoming: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async def run(send: Send) -> None:
        for i in range(int(first)):
            await send(i)
        await send("last")

    async for message in outbox(run):
        yield message


def authorize(method: str, header: RequestHeader, body: Any) -> None:
    if header.token == "bad":
        raise RPCError(grpc.StatusCode.PERMISSION_DENIED, "Permission denied")


def serving() -> contextlib.AbstractAsyncContextManager[tuple[str, ConnectionPool]]:
    return aio.serving(RPCService({"Test/Echo": StreamMethod(echo), "Test/Ticker": StreamMethod(ticker)},
                                  authorize=authorize))



def test_messages_flow_both_ways_and_a_half_close_ends_the_handler_cleanly() -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            stream = await pool.open_stream(address, "Test/Echo", RequestHeader(token="t"), {"PeerID": "p"})
            assert await stream.receive() == {"first": {"PeerID": "p"}, "token": "t"}
            for message in ({"Type": "Heartbeat"}, [1, 2], "x" * 10_000):
                await stream.send(message)
                assert await stream.receive() == message
            await stream.done_writing()
            assert [m async for m in stream.messages()] == ["client done"]
            with pytest.raises(EOFError):
                await stream.receive()

    run(scenario())


def test_handler_errors_cross_with_code_and_message_never_a_traceback() -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            for message, code, text in (("fail", grpc.StatusCode.INVALID_ARGUMENT, "Message: fail is refused"),
                                        ("boom", grpc.StatusCode.INTERNAL, "internal error: 'secret internal detail'")):
                stream = await pool.open_stream(address, "Test/Echo", RequestHeader(), {})
                await stream.receive()
                await stream.send(message)
                with pytest.raises(RPCError) as failed:
                    await stream.receive()
                assert failed.value.code == code and failed.value.message == text
                assert not failed.value.transport and "Traceback" not in failed.value.message
            # The first message is checked before the handler runs.
            stream = await pool.open_stream(address, "Test/Echo", RequestHeader(token="bad"), {})
            with pytest.raises(RPCError) as denied:
                await stream.receive()
            assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED and denied.value.message == "Permission denied"

    run(scenario())


def test_outbox_sends_what_the_handler_produces_then_ends() -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            stream = await pool.open_stream(address, "Test/Ticker", RequestHeader(), 3)
            assert [m async for m in stream.messages()] == [0, 1, 2, "last"]

    run(scenario())


def test_client_cancel_ends_the_handler_and_an_unreachable_server_is_a_transport_failure() -> None:
    async def scenario() -> None:
        ENDED.clear()
        async with serving() as (address, pool):
            stream = await pool.open_stream(address, "Test/Echo", RequestHeader(), {})
            await stream.receive()
            stream.close()
            with pytest.raises(RPCError) as cancelled:
                await stream.receive()
            assert cancelled.value.code == grpc.StatusCode.CANCELLED
            for _ in range(50):
                if ENDED:
                    break
                await asyncio.sleep(0.05)
            assert ENDED == ["echo"]

            # Closed with a reason (a relay whose leader moved): the reader hears it as UNAVAILABLE.
            stream = await pool.open_stream(address, "Test/Echo", RequestHeader(), {})
            await stream.receive()
            closes: list[str] = []
            stream.on_close(lambda: closes.append("x"))
            reader = asyncio.ensure_future(stream.receive())
            await asyncio.sleep(0.05)
            stream.close("leader moved")
            stream.close()
            with pytest.raises(RPCError) as moved:
                await reader
            assert moved.value.code == grpc.StatusCode.UNAVAILABLE and moved.value.message.endswith("leader moved")
            assert closes == ["x"]

            # A reader cancelled by its own task stays cancelled (not turned into an error).
            stream = await pool.open_stream(address, "Test/Echo", RequestHeader(), {})
            await stream.receive()
            reader = asyncio.ensure_future(stream.receive())
            await asyncio.sleep(0.05)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            stream.close()

            with pytest.raises(RPCError) as unreachable:
                dead = await pool.open_stream("127.0.0.1:1", "Test/Echo", RequestHeader(), {})
                await dead.receive()
            assert unreachable.value.code == grpc.StatusCode.UNAVAILABLE and unreachable.value.transport

    run(scenario())


def test_relay_passes_a_stream_through_to_another_server_both_ways_with_its_errors() -> None:
    async def scenario() -> None:
        async with serving() as (upstream_address, upstream_pool):
            async def relaying(header: RequestHeader, first: Any, incoming: AsyncIterator[Any]) -> AsyncIterator[Any]:
                upstream = await upstream_pool.open_stream(upstream_address, "Test/Echo", header.forwarded(), first)
                async for message in relay(upstream, incoming):
                    yield message

            front = grpc.aio.server()
            front.add_generic_rpc_handlers([RPCService({"Test/Relay": StreamMethod(relaying)})])
            port = front.add_insecure_port("127.0.0.1:0")
            await front.start()
            pool = ConnectionPool()
            try:
                stream = await pool.open_stream(f"127.0.0.1:{port}", "Test/Relay", RequestHeader(token="t"), "hi")
                assert await stream.receive() == {"first": "hi", "token": "t"}
                await stream.send({"n": 1})
                assert await stream.receive() == {"n": 1}
                await stream.done_writing()  # the half-close travels up; the upstream's last word comes down
                assert [m async for m in stream.messages()] == ["client done"]

                stream = await pool.open_stream(f"127.0.0.1:{port}", "Test/Relay", RequestHeader(), {})
                await stream.receive()
                await stream.send("fail")
                with pytest.raises(RPCError) as failed:
                    await stream.receive()
                assert failed.value.code == grpc.StatusCode.INVALID_ARGUMENT
                assert failed.value.message == "Message: fail is refused"
            finally:
                await pool.close()
                await front.stop(grace=None)

    run(scenario())

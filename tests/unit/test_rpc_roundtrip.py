"""RPC end to end: a real grpc.aio server on 127.0.0.1 (ephemeral port) serving RPCService, called
through ConnectionPool. Pins what DESIGN §6 promises: status codes and Consul's error texts cross
the wire unchanged, internals never do, and header/meta survive the msgpack framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.codec import (
    MAX_MESSAGE_BYTES,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from meshfed.rpc.errors import ERR_NO_LEADER, ERR_NO_PATH, RPCError, invalid, not_found, unavailable
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import RPCService
from tests import aio
from tests.aio import run

Observed = list[tuple[str, float, str]]


async def echo(header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
    meta = QueryMeta(index=header.min_query_index + 1, known_leader=True, last_contact=0.5, consistency_level="x")
    return meta, {"header": header.to_wire(), "body": body}


def raising(exc: Exception) -> Callable[[RequestHeader, Any], Awaitable[tuple[QueryMeta, Any]]]:
    async def handler(header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        raise exc

    return handler


HANDLERS = {
    "Test/Echo": echo,
    "/Test/Slash": echo,
    "Test/NotFound": raising(not_found("federation state dc9 not found")),
    "Test/Invalid": raising(invalid("Datacenter: missing")),
    "Test/NoLeader": raising(unavailable(ERR_NO_LEADER)),
    "Test/NoPath": raising(unavailable(f"{ERR_NO_PATH}: dc3")),
    "Test/Boom": raising(KeyError("secret internal detail")),
}


def serving(observed: Observed | None = None) -> contextlib.AbstractAsyncContextManager[tuple[str, ConnectionPool]]:
    observe = None if observed is None else (lambda m, s, c: observed.append((m, s, c)))
    return aio.serving(RPCService(HANDLERS, observe=observe))



def test_ok_path_carries_header_body_and_meta() -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            header = RequestHeader(datacenter="dc2", token="t", min_query_index=4, max_query_time=1.5,
                                   allow_stale=True, request_id="r1", hops=2)
            meta, body = await pool.call(address, "Test/Echo", header, {"k": [1, "two", None]}, timeout=5)
            assert meta == QueryMeta(index=5, known_leader=True, last_contact=0.5, consistency_level="x")
            assert RequestHeader.from_wire(body["header"]) == header
            assert body["body"] == {"k": [1, "two", None]}
            # a leading slash on either side names the same method
            meta, _ = await pool.call(address, "/Test/Echo", RequestHeader(), None, timeout=5)
            assert meta.index == 1
            meta, _ = await pool.call(address, "Test/Slash", RequestHeader(), None, timeout=5)
            assert meta.index == 1

    run(scenario())


@pytest.mark.parametrize(
    "method, code, message",
    [
        ("Test/NotFound", grpc.StatusCode.NOT_FOUND, "federation state dc9 not found"),
        ("Test/Invalid", grpc.StatusCode.INVALID_ARGUMENT, "Datacenter: missing"),
        ("Test/NoLeader", grpc.StatusCode.UNAVAILABLE, ERR_NO_LEADER),
        ("Test/NoPath", grpc.StatusCode.UNAVAILABLE, f"{ERR_NO_PATH}: dc3"),
    ],
)
def test_rpc_error_code_and_message_are_preserved_end_to_end(method: str, code: grpc.StatusCode, message: str) -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            with pytest.raises(RPCError) as caught:
                await pool.call(address, method, RequestHeader(), None, timeout=5)
            assert caught.value.code == code
            assert caught.value.message == message

    run(scenario())


def test_plain_exception_becomes_internal_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            with pytest.raises(RPCError) as caught:
                await pool.call(address, "Test/Boom", RequestHeader(), None, timeout=5)
            assert caught.value.code == grpc.StatusCode.INTERNAL
            assert "Traceback" not in caught.value.message
            assert 'File "' not in caught.value.message and "line " not in caught.value.message

    with caplog.at_level(logging.ERROR, logger="meshfed.rpc.service"):
        run(scenario())
    assert any("Test/Boom" in r.getMessage() and r.exc_info for r in caplog.records), "the server must log it"


def test_junk_request_bytes_are_invalid_argument() -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            for junk in (b"\xc1\xc1\xc1", b"\x93\x01\x02\x03", msgpack.packb("just a string"), b""):
                stub = pool.channel(address).unary_unary("/Test/Echo")
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub(junk, timeout=5)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, junk

    run(scenario())


def test_unknown_method_is_unimplemented() -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            with pytest.raises(RPCError) as caught:
                await pool.call(address, "Test/Nope", RequestHeader(), None, timeout=5)
            assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED

    run(scenario())


def test_observer_sees_every_call_with_its_outcome() -> None:
    async def scenario() -> None:
        observed: Observed = []
        async with serving(observed) as (address, pool):
            await pool.call(address, "Test/Echo", RequestHeader(), None, timeout=5)
            for method in ("Test/NotFound", "Test/Boom"):
                with pytest.raises(RPCError):
                    await pool.call(address, method, RequestHeader(), None, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                await pool.channel(address).unary_unary("/Test/Echo")(b"\xc1", timeout=5)
        assert [(m, c) for m, _, c in observed] == [
            ("Test/Echo", ""), ("Test/NotFound", "NOT_FOUND"), ("Test/Boom", "INTERNAL"), ("Test/Echo", "INVALID_ARGUMENT"),
        ]
        assert all(0 <= seconds < 5 for _, seconds, _ in observed)

    run(scenario())


def test_unreachable_server_is_unavailable_and_names_the_address() -> None:
    async def scenario() -> None:
        async with serving() as (address, pool):
            dead = "127.0.0.1:1"
            with pytest.raises(RPCError) as caught:
                await pool.call(dead, "Test/Echo", RequestHeader(), None, timeout=5)
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            assert dead in caught.value.message

    run(scenario())


def test_deadline_is_reported_with_the_timeout() -> None:
    async def scenario() -> None:
        server, address = await _slow_server()
        pool = ConnectionPool()
        try:
            with pytest.raises(RPCError) as caught:
                await pool.call(address, "Test/Slow", RequestHeader(), None, timeout=0.2)
            assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "timed out after 0.2s" in caught.value.message
        finally:
            await pool.close()
            await server.stop(grace=None)

    run(scenario())


async def _slow_server(seconds: float = 5) -> tuple[grpc.aio.Server, str]:
    async def slow(header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        await asyncio.sleep(seconds)
        return QueryMeta(index=7), body

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([RPCService({"Test/Slow": slow})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def test_a_channel_dropped_under_a_call_is_unavailable_not_a_cancellation() -> None:
    """gRPC cancels calls on a closed channel; the caller was not cancelled and must be able to
    retry (the Router does, on UNAVAILABLE) instead of seeing a CancelledError it never asked for."""

    async def scenario() -> None:
        server, address = await _slow_server()
        pool = ConnectionPool()
        try:
            call = asyncio.create_task(pool.call(address, "Test/Slow", RequestHeader(), None, timeout=10))
            await asyncio.sleep(0.2)
            pool.discard(address)
            with pytest.raises(RPCError) as caught:
                await call
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            assert address in caught.value.message
        finally:
            await pool.close()
            await server.stop(grace=None)

    run(scenario())


def test_one_calls_transport_failure_leaves_a_connected_channel_and_its_other_calls_alone() -> None:
    """A follower's channel to its leader carries its forwarded blocking queries. One call failing
    in transport used to close the channel, cancelling every other call on it (10,000 parked
    queries: hundreds of 503s and a stampede of re-forwards). A connected channel is kept."""

    async def scenario() -> None:
        server, address = await _slow_server(seconds=1)
        pool = ConnectionPool()
        try:
            channel = pool.channel(address)
            calls = [asyncio.create_task(pool.call(address, "Test/Slow", RequestHeader(), n, timeout=10))
                     for n in range(20)]
            await asyncio.sleep(0.3)
            assert channel.get_state() == grpc.ChannelConnectivity.READY
            assert pool.drop_if_failing(address) is False
            assert pool.channel(address) is channel
            assert [body for _, body in await asyncio.gather(*calls)] == list(range(20))
        finally:
            await pool.close()
            await server.stop(grace=None)

    run(scenario())


def test_a_channel_whose_connects_fail_is_dropped_for_a_fresh_dial() -> None:
    async def scenario() -> None:
        server, address = await _slow_server()
        await server.stop(grace=None)  # nothing listens there any more
        pool = ConnectionPool()
        try:
            channel = pool.channel(address)
            with pytest.raises(RPCError) as caught:
                await pool.call(address, "Test/Slow", RequestHeader(), None, timeout=5)
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE and caught.value.transport
            for _ in range(50):  # the failed connect moves it to TRANSIENT_FAILURE
                if channel.get_state() == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                    break
                await asyncio.sleep(0.02)
            assert pool.drop_if_failing(address) is True
            assert pool.channel(address) is not channel
            assert pool.drop_if_failing("127.0.0.1:1") is False  # no channel: nothing to drop
        finally:
            await pool.close()

    run(scenario())


def test_cancelling_the_caller_still_cancels() -> None:
    async def scenario() -> None:
        server, address = await _slow_server()
        pool = ConnectionPool()
        try:
            call = asyncio.create_task(pool.call(address, "Test/Slow", RequestHeader(), None, timeout=10))
            await asyncio.sleep(0.2)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        finally:
            await pool.close()
            await server.stop(grace=None)

    run(scenario())


def test_pool_reuses_channels_per_address_and_server_name() -> None:
    async def scenario() -> None:
        pool = ConnectionPool()
        a = pool.channel("127.0.0.1:1")
        assert pool.channel("127.0.0.1:1") is a
        b = pool.channel("127.0.0.1:1", "s1.server.dc2.consul")
        assert b is not a
        pool.discard("127.0.0.1:1")
        assert pool.channel("127.0.0.1:1") is not a
        assert pool.channel("127.0.0.1:1", "s1.server.dc2.consul") is b
        await pool.close()
        await asyncio.sleep(0)

    run(scenario())


# ---- header and meta framing (no network) -------------------------------------------------------

headers = st.builds(
    RequestHeader,
    datacenter=st.text(max_size=20),
    token=st.text(max_size=40),
    min_query_index=st.integers(0, 2**63 - 1),
    max_query_time=st.floats(0, 600, allow_nan=False),
    allow_stale=st.booleans(),
    require_consistent=st.booleans(),
    request_id=st.text(max_size=32),
    hops=st.integers(0, 10),
)
metas = st.builds(
    QueryMeta,
    index=st.integers(1, 2**63 - 1),
    known_leader=st.booleans(),
    last_contact=st.floats(0, 1e6, allow_nan=False),
    consistency_level=st.sampled_from(["", "stale", "consistent", "default"]),
)
bodies = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@given(headers, bodies)
def test_request_framing_round_trips(header: RequestHeader, body: Any) -> None:
    decoded_header, decoded_body = decode_request(encode_request(header, body))
    assert decoded_header == header
    assert decoded_body == body


@given(metas, bodies)
def test_response_framing_round_trips(meta: QueryMeta, body: Any) -> None:
    assert decode_response(encode_response(meta, body)) == (meta, body)


def test_wire_forms_drop_a_newer_server_s_fields_and_default_an_older_one_s() -> None:
    newer = {**RequestHeader(token="t", hops=2).to_wire(), "partition": "default"}
    assert RequestHeader.from_wire(newer) == RequestHeader(token="t", hops=2)
    assert QueryMeta.from_wire({"index": 7}) == QueryMeta(index=7)  # no results_filtered: an older server
    assert QueryMeta.from_wire(None) == QueryMeta()


def test_equal_headers_encode_to_the_same_bytes_in_field_order() -> None:
    """A follower shares one upstream call among byte-identical blocking reads (coalesce_key)."""
    header = RequestHeader(token="t", min_query_index=5, max_query_time=30.0)
    assert list(header.to_wire()) == [f.name for f in dataclasses.fields(RequestHeader)]
    assert encode_request(header, {"a": 1}) == encode_request(RequestHeader(**header.to_wire()), {"a": 1})


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(headers, metas)
def test_header_and_meta_round_trip_over_grpc(header: RequestHeader, meta: QueryMeta) -> None:
    async def handler(received: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return meta, received.to_wire()

    async def scenario() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([RPCService({"T/H": handler})])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        pool = ConnectionPool()
        try:
            got_meta, got_header = await pool.call(f"127.0.0.1:{port}", "T/H", header, None, timeout=5)
        finally:
            await pool.close()
            await server.stop(grace=None)
        assert got_meta == meta
        assert RequestHeader.from_wire(got_header) == header

    run(scenario())


def test_forwarded_keeps_everything_but_hops() -> None:
    header = RequestHeader(datacenter="dc1", token="t", min_query_index=3, request_id="r", hops=1)
    forwarded = header.forwarded()
    assert forwarded.hops == 2 and forwarded.request_id == "r" and forwarded.token == "t"
    assert header.forwarded(datacenter="dc2").datacenter == "dc2"


def test_unknown_and_missing_wire_fields_are_tolerated() -> None:
    """A newer peer may send fields we do not know; an older one may omit some."""
    assert RequestHeader.from_wire({"datacenter": "dc1", "future_field": 1}) == RequestHeader(datacenter="dc1")
    assert RequestHeader.from_wire(None) == RequestHeader()
    assert QueryMeta.from_wire({"index": 7, "extra": True}) == QueryMeta(index=7)
    assert QueryMeta.from_wire([1, 2]) == QueryMeta()


def test_oversized_and_non_map_frames_are_invalid() -> None:
    for frame in (b"\x00" * (MAX_MESSAGE_BYTES + 1), msgpack.packb([1, 2]), b"\xc1"):
        with pytest.raises(RPCError) as caught:
            decode_request(frame)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(RPCError):
        decode_response(msgpack.packb(3))


def test_a_call_the_server_cancelled_is_a_transport_failure_but_a_handlers_cancelled_is_not() -> None:
    """gRPC core cancels calls it cannot queue for the application (an overloaded server): the
    caller must retry elsewhere or later, as for UNAVAILABLE, not answer the client with it."""
    from meshfed.rpc.errors import APPLICATION_ERROR_KEY, from_status

    by_core = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "CANCELLED")
    error = from_status(by_core, "rpc Catalog/Services to 127.0.0.1:8300")
    assert (error.code, error.transport) == (grpc.StatusCode.UNAVAILABLE, True)
    assert error.message == "rpc Catalog/Services to 127.0.0.1:8300 failed: the server cancelled the call (CANCELLED)"

    by_handler = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(),
                                      grpc.aio.Metadata((APPLICATION_ERROR_KEY, "1")), "stopped")
    error = from_status(by_handler, "rpc Catalog/Services to 127.0.0.1:8300")
    assert (error.code, error.transport, error.message) == (grpc.StatusCode.CANCELLED, False, "stopped")


def test_an_answer_over_the_size_limit_is_an_internal_error_that_says_so_not_a_rate_limit() -> None:
    """gRPC reports a message over its size limit as RESOURCE_EXHAUSTED, which HTTP answers as
    429 "slow down" (Consul's rate limit): no retry can pass it. It is this server's limit, said
    as such, with the way around it."""

    async def huge(header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return QueryMeta(), b"x" * (MAX_MESSAGE_BYTES + 1024)

    async def scenario() -> None:
        async with aio.serving(RPCService({"Test/Huge": huge})) as (address, pool):
            with pytest.raises(RPCError) as caught:
                await pool.call(address, "Test/Huge", RequestHeader(), None, timeout=30)
            assert caught.value.code == grpc.StatusCode.INTERNAL, caught.value
            assert "larger than the 16 MiB RPC message limit" in caught.value.message
            assert "?stale" in caught.value.message

    run(scenario())

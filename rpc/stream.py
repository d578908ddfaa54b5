"""Long-lived bidirectional streams over the same gRPC generic handlers as the unary calls.

The first message the client sends is a request (`{"h": header, "b": body}`, codec.py): the
server checks it (peer certificate, ACL) before its handler runs, exactly as it checks a unary
call. Every later message, either way, is one msgpack value. A handler is an async generator
`(header, first body, incoming messages) -> outgoing messages`; it raises `RPCError` to end the
stream with that status (marked with APPLICATION_ERROR_KEY so the client passes its message on
untouched); any other exception ends it as INTERNAL with the message logged here, never a
traceback on the wire. A stream has no deadline: either side ends it by closing or cancelling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from meshfed.rpc.codec import decode_message, decode_request, encode_message, encode_request
from meshfed.rpc.errors import APPLICATION_ERROR_KEY, RPCError, from_status, internal, invalid, status_error
from meshfed.rpc.header import RequestHeader

log = logging.getLogger(__name__)

StreamHandler = Callable[[RequestHeader, Any, AsyncIterator[Any]], AsyncIterator[Any]]
# (method, header, first body, context) -> None or raises RPCError: the service's checks
Prepare = Callable[[str, RequestHeader, Any, grpc.aio.ServicerContext], Awaitable[Any]]  # a read filter, which streams do not use
Send = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class StreamMethod:
    """Registers `handler` as a bidirectional stream in `RPCService(handlers=...)`."""

    handler: StreamHandler


def stream_rpc_handler(method: str, handler: StreamHandler, prepare: Prepare) -> grpc.RpcMethodHandler:
    """Streams are not timed into the RPC latency metrics: they last as long as their peering."""

    async def behavior(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        failure: RPCError | None = None
        try:
            try:
                first = await anext(requests)
            except StopAsyncIteration:
                raise invalid("stream closed before its first message") from None
            header, body = decode_request(first)
            await prepare(method, header, body, context)
            async for message in handler(header, body, _decoded(requests)):
                yield encode_message(message)
        except RPCError as exc:
            failure = exc
        except Exception as exc:
            log.exception("stream %s failed", method)
            failure = internal(f"internal error: {exc}")
        if failure is not None:
            await context.abort(failure.code, failure.message, trailing_metadata=((APPLICATION_ERROR_KEY, "1"),))

    return grpc.stream_stream_rpc_method_handler(behavior)


async def _decoded(requests: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    async for raw in requests:
        yield decode_message(raw)


async def outbox(run: Callable[[Send], Awaitable[None]]) -> AsyncIterator[Any]:
    """Turn `run(send)` into the messages a stream handler yields: for a handler whose sending is
    driven by events of its own (timers, state changes) rather than by what it receives. Ends when
    `run` returns, after everything it sent; re-raises what `run` raised; cancels `run` if the
    stream goes away first."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.ensure_future(run(queue.put))
    try:
        while True:
            get = asyncio.ensure_future(queue.get())
            await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
            if get.done():
                yield get.result()
                continue
            get.cancel()
            while not queue.empty():
                yield queue.get_nowait()
            task.result()
            return
    finally:
        task.cancel()


async def relay(upstream: ClientStream, incoming: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A handler's body that passes a stream through to `upstream` (another server's stream,
    its first message already sent): what the caller sends goes up, what comes down is yielded;
    either end closing or failing ends both."""

    async def forward() -> None:
        async for received in incoming:
            await upstream.send(received)
        await upstream.done_writing()

    task = asyncio.ensure_future(forward())
    try:
        async for received in upstream.messages():
            yield received
    finally:
        task.cancel()
        upstream.close()
        if task.done() and not task.cancelled():
            task.exception()  # the same failure ends `messages()`; retrieved so it is not logged twice


class ClientStream:
    """The client's end of an open stream. `receive()` returns the next message or raises
    `EOFError` when the server ended the stream cleanly, `RPCError` when it failed; a closed
    channel under the stream is a transport failure (retry elsewhere), as for unary calls."""

    def __init__(self, call: grpc.aio.StreamStreamCall, method: str, address: str) -> None:
        self._call = call
        self.what = f"stream {method} to {address}"
        self._closed: str | None = None  # why we closed it ("" when nobody said)
        self._on_close: list[Callable[[], None]] = []

    async def _guard(self, step: Awaitable[Any]) -> Any:
        try:
            return await step
        except grpc.aio.AioRpcError as exc:
            raise from_status(exc, self.what) from None
        except asyncio.InvalidStateError:  # write after the call ended: say why it ended
            raise await self._ended() from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling() == 0 and self._closed is not None:
                if self._closed:  # closed with a reason the other end should hear (a relay's leader moved)
                    raise RPCError(grpc.StatusCode.UNAVAILABLE, f"{self.what} closed: {self._closed}") from None
                raise RPCError(grpc.StatusCode.CANCELLED, f"{self.what} closed here") from None
            if task is not None and task.cancelling() == 0:  # the channel closed under us
                raise RPCError(grpc.StatusCode.UNAVAILABLE, f"{self.what} failed: channel closed",
                               transport=True) from None
            raise

    async def _ended(self) -> RPCError:
        try:
            code = await self._call.code()
            details = await self._call.details()
            trailing = await self._call.trailing_metadata() or ()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the call failed in a way gRPC reports differently
            return RPCError(grpc.StatusCode.UNAVAILABLE, f"{self.what} failed: {exc}", transport=True)
        return status_error(code, details, trailing, self.what)

    async def send(self, message: Any) -> None:
        data = encode_message(message)
        await self._guard(self._call.write(data))

    async def receive(self) -> Any:
        data = await self._guard(self._call.read())
        if data is grpc.aio.EOF:
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                raise await self._ended()
            raise EOFError(f"{self.what} ended by the server")
        return decode_message(data)

    async def messages(self) -> AsyncIterator[Any]:
        """Every message until the server ends the stream cleanly."""
        while True:
            try:
                yield await self.receive()
            except EOFError:
                return

    async def done_writing(self) -> None:
        """Half-close: the server's incoming messages end; ours may still arrive."""
        try:
            await self._guard(self._call.done_writing())
        except RPCError:
            pass  # the call already ended: nothing left to half-close

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    def close(self, reason: str = "") -> None:
        """Cancel the call (idempotent): the server's handler sees its stream end; a reader here
        gets UNAVAILABLE with `reason` when one is given, else CANCELLED."""
        if self._closed is None:
            self._closed = reason
        self._call.cancel()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()


async def open_stream(channel: grpc.aio.Channel, method: str, address: str, header: RequestHeader,
                      first: Any) -> ClientStream:
    call = channel.stream_stream("/" + method.lstrip("/"))(wait_for_ready=False)
    stream = ClientStream(call, method, address)
    try:
        await stream._guard(call.write(encode_request(header, first)))
    except BaseException:
        call.cancel()
        raise
    return stream

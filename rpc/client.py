"""Client side of meshfed RPC: a pool of gRPC channels keyed by (dial address, TLS server name).

The key includes the server name because a cross-DC call dials a mesh gateway's address with the
SNI of the server it wants (`<node>.server.<dc>.<domain>`); the same gateway address is reached
under many names, and each needs its own TLS session (grpc.ssl_target_name_override sets both
the SNI and the name the certificate is verified against).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from meshfed.rpc.codec import decode_response, encode_request
from meshfed.rpc.errors import RPCError, from_status
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.limits import MAX_MESSAGE_BYTES
from meshfed.rpc.stream import ClientStream, open_stream

log = logging.getLogger(__name__)

CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a server restart instead of gRPC's default 1 s -> 120 s backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


class ConnectionPool:
    def __init__(self, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._credentials = credentials
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}

    @property
    def tls(self) -> bool:
        return self._credentials is not None

    def channel(self, address: str, server_name: str = "") -> grpc.aio.Channel:
        key = (address, server_name)
        channel = self._channels.get(key)
        if channel is None:
            options = list(CHANNEL_OPTIONS)
            if self._credentials is not None:
                if server_name:
                    options.append(("grpc.ssl_target_name_override", server_name))
                channel = grpc.aio.secure_channel(address, self._credentials, options=options)
            else:
                channel = grpc.aio.insecure_channel(address, options=options)
            self._channels[key] = channel
        return channel

    async def call(
        self,
        address: str,
        method: str,
        header: RequestHeader,
        body: Any,
        *,
        timeout: float,
        server_name: str = "",
    ) -> tuple[QueryMeta, Any]:
        """Call `/<method>` on `address`; raises RPCError carrying the remote status code."""
        stub = self.channel(address, server_name).unary_unary("/" + method.lstrip("/"))
        try:
            response = await stub(encode_request(header, body), timeout=timeout, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            raise from_status(exc, f"rpc {method} to {address}", timeout) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling() == 0:
                # Nobody cancelled us: the channel was closed under the call (discard/close).
                # That is a transport failure the caller may retry, not a request to stop.
                raise RPCError(
                    grpc.StatusCode.UNAVAILABLE, f"rpc {method} to {address} failed: channel closed", transport=True
                ) from None
            raise
        return decode_response(response)

    async def open_stream(self, address: str, method: str, header: RequestHeader, first: Any, *,
                          server_name: str = "") -> ClientStream:
        """A bidirectional stream to `/<method>` on `address` over the pooled channel, its first
        message (header and `first`) sent; no deadline: the caller closes it (rpc/stream.py)."""
        return await open_stream(self.channel(address, server_name), method, address, header, first)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(grace=None)

    def discard(self, address: str, server_name: str = "") -> None:
        """Close and forget one channel, cancelling every call on it (callers see UNAVAILABLE)."""
        channel = self._channels.pop((address, server_name), None)
        if channel is not None:
            asyncio.ensure_future(channel.close(grace=None))

    def drop_if_failing(self, address: str, server_name: str = "") -> bool:
        """After a call failed in transport: close and forget the channel only if its connects are
        failing. Such a channel sits in gRPC's reconnect backoff and fails calls at once, where a
        fresh one dials immediately. A channel that is connected (or idle, or connecting) may carry
        thousands of other calls, a follower's forwarded blocking queries among them: closing it
        for one call's failure cancelled them all, and they all came back at once. True if dropped."""
        channel = self._channels.get((address, server_name))
        if channel is None:
            return False
        state = channel.get_state(try_to_connect=False)
        if state not in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
            return False
        self.discard(address, server_name)
        return True


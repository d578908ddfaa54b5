"""Server side of meshfed RPC: gRPC generic handlers with msgpack payloads (no protoc step).

Methods are addressed as `/<Service>/<Method>` (e.g. `/FederationState/List`, as Consul names
them). A handler is `async (header, body) -> (meta, body)` and raises `RPCError` for anything a
client should see; any other exception becomes INTERNAL with the message logged here, never a
traceback on the wire. A `StreamMethod` registers a bidirectional stream instead (stream.py),
checked the same way on its first message.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import grpc

from meshfed.rpc.codec import decode_request, encode_response
from meshfed.rpc.errors import APPLICATION_ERROR_KEY, RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.stream import StreamMethod, stream_rpc_handler

log = logging.getLogger(__name__)

Handler = Callable[[RequestHeader, Any], Awaitable[tuple[QueryMeta, Any]]]
# (method, seconds, error code name or "") for metrics
CallObserver = Callable[[str, float, str], None]
# answer -> (what the caller may see of it, whether anything was dropped)
ResultFilter = Callable[[Any], tuple[Any, bool]]
# (method, header, body) -> None, or raises RPCError: the server's ACL check, run before the handler
# so a forwarded write is judged by the token the caller sent. For a read it may return a
# ResultFilter, applied to the handler's answer (marked `results_filtered` when it dropped rows).
Authorize = Callable[[str, RequestHeader, Any], None | ResultFilter | Awaitable[None | ResultFilter]]


class PeerCheck(Protocol):
    """Methods only other servers may call, and the check of the caller's TLS certificate.

    `__call__(method, dns_names)` gets the DNS names of the verified client certificate (empty
    without one) and raises RPCError to refuse."""

    methods: frozenset[str]

    def __call__(self, method: str, dns_names: list[str]) -> None: ...


def peer_dns_names(context: grpc.aio.ServicerContext) -> list[str]:
    """The subject alternative names of the caller's verified certificate, as gRPC reports them."""
    try:
        names = context.auth_context().get("x509_subject_alternative_name") or []
    except Exception:  # no TLS on this port: no certificate
        return []
    return [name.decode() if isinstance(name, bytes) else str(name) for name in names]


class RPCService(grpc.GenericRpcHandler):
    def __init__(
        self, handlers: Mapping[str, Handler | StreamMethod], observe: CallObserver | None = None, authorize: Authorize | None = None,
        peer_check: PeerCheck | None = None,
    ) -> None:
        self._handlers = {"/" + name.lstrip("/"): (name.lstrip("/"), h) for name, h in handlers.items()}
        self._observe = observe
        self._authorize = authorize
        self._peer_check = peer_check

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        entry = self._handlers.get(handler_call_details.method)
        if entry is None:
            return None
        method, handler = entry
        observe = self._observe
        authorize = self._authorize
        peer_check = self._peer_check if self._peer_check is not None and method in self._peer_check.methods else None

        async def prepare(method: str, header: RequestHeader, body: Any,
                          context: grpc.aio.ServicerContext) -> ResultFilter | None:
            if peer_check is not None:
                peer_check(method, peer_dns_names(context))
            if authorize is None:
                return None
            checked = authorize(method, header, body)
            if inspect.isawaitable(checked):
                checked = await checked
            return checked

        if isinstance(handler, StreamMethod):
            return stream_rpc_handler(method, handler.handler, prepare)

        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            started = time.perf_counter()
            failure: RPCError | None = None
            response = b""
            try:
                header, body = decode_request(request)
                keep = await prepare(method, header, body, context)
                meta, result = await handler(header, body)
                if keep is not None:
                    result, removed = keep(result)
                    if removed:
                        meta = dataclasses.replace(meta, results_filtered=True)
                response = encode_response(meta, result)
            except RPCError as exc:
                failure = exc
            except Exception as exc:
                log.exception("rpc %s failed", method)
                failure = RPCError(grpc.StatusCode.INTERNAL, f"internal error: {exc}")
            if observe is not None:
                observe(method, time.perf_counter() - started, failure.code.name if failure else "")
            if failure is not None:
                await context.abort(failure.code, failure.message, trailing_metadata=((APPLICATION_ERROR_KEY, "1"),))
            return response

        return grpc.unary_unary_rpc_method_handler(unary)

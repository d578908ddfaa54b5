"""RPC errors: one exception type that carries a gRPC status code end to end.

Endpoints raise `RPCError`; the gRPC service turns it into a status; the client turns a status
back into the same `RPCError`; the HTTP layer maps the code to a status (DESIGN §6).
"""

from __future__ import annotations

from typing import Any

import grpc

from meshfed.rpc.limits import MAX_MESSAGE_BYTES

# Consul's error texts that clients and operators recognise.
ERR_NO_LEADER = "No cluster leader"
ERR_NO_PATH = "No path to datacenter"
ERR_NO_SERVER = "Remote DC has no server currently reachable"

# Trailing metadata that marks a status as raised by a handler (an RPCError), as opposed to one
# made up by gRPC itself (connection refused, reset): the client passes the former through with
# its message untouched, so Consul's texts ("No cluster leader") survive forwarding hops.
APPLICATION_ERROR_KEY = "meshfed-error"


class RPCError(Exception):
    """`transport` is True when the call never reached a handler (connect failure, closed
    channel): the channel itself is suspect. An error a remote handler raised is not."""

    def __init__(self, code: grpc.StatusCode, message: str, transport: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transport = transport

    def __repr__(self) -> str:
        return f"RPCError({self.code.name}, {self.message!r})"


def invalid(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.NOT_FOUND, message)


def unavailable(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.UNAVAILABLE, message)


def conflict(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.FAILED_PRECONDITION, message)


def internal(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.INTERNAL, message)


def _from_handler(trailing: Any) -> bool:
    """The status was raised by our handler (RPCError), not made up by gRPC."""
    return any(key == APPLICATION_ERROR_KEY for key, _ in trailing or ())


def from_status(exc: grpc.aio.AioRpcError, what: str, timeout: float | None = None) -> RPCError:
    """A failed call's status as the RPCError the caller sees; `what` names the call in messages
    gRPC made up (a handler's own message is passed through untouched)."""
    return status_error(exc.code(), exc.details(), exc.trailing_metadata(), what, timeout)


def status_error(code: grpc.StatusCode, details: str | None, trailing: Any, what: str,
                 timeout: float | None = None) -> RPCError:
    """`from_status` for a call's parts (a stream reads them one by one)."""
    details = details or code.name
    if _from_handler(trailing):
        return RPCError(code, details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None:
        return RPCError(code, f"{what} timed out after {timeout:.1f}s")
    if code == grpc.StatusCode.UNAVAILABLE:
        return RPCError(code, f"{what} failed: {details}", transport=True)
    if code == grpc.StatusCode.CANCELLED:
        # Not our handler's doing (that carries APPLICATION_ERROR_KEY) nor our caller's (that is
        # asyncio's CancelledError): gRPC core on the server dropped the call, as it does past
        # its backlog of calls not yet picked up. To the caller the server was unavailable.
        return RPCError(grpc.StatusCode.UNAVAILABLE, f"{what} failed: the server cancelled the call ({details})",
                        transport=True)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        # gRPC's size limit, not a rate limit (HTTP's 429): this server's limit, and no retry passes it.
        return RPCError(grpc.StatusCode.INTERNAL, f"{what} failed: the message is larger than the "
                        f"{MAX_MESSAGE_BYTES // (1024 * 1024)} MiB RPC message limit ({details}); a read with "
                        f"?stale is answered by the server asked, without this hop")
    return RPCError(code, f"{what} failed: {details}")

"""RPC errors: one exception type that carries a gRPC status code end to end.

Endpoints raise `RPCError`; the gRPC service turns it into a status; the client turns a status
back into the same `RPCError`; the HTTP layer maps the code to a status (DESIGN §6).
"""

from __future__ import annotations

import grpc

# Consul's error texts that clients and operators recognise.
ERR_NO_LEADER = "No cluster leader"
ERR_NO_PATH = "No path to datacenter"
ERR_NO_SERVER = "Remote DC has no server currently reachable"


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

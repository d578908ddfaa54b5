"""Which HTTP status an RPC failure becomes, for every gRPC status code there is.

A code missing from a partial table used to fall through to 500 with no log line: 10,000 parked
blocking queries on a follower saw thousands of `500 CANCELLED` that nobody could trace (issue
#13). Each code now has a deliberate answer, chosen by who can act on it: the client's own
mistakes are 4xx, conditions a retry can clear are 503/504/429, and only server faults are 500.
The server-side ones (5xx) are logged with the request by the error middleware.
"""

from __future__ import annotations

import grpc

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 503,  # the upstream call was cancelled (server stopping or overloaded): retry
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,  # Consul's answer to rate limiting
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 403,  # Consul answers an unknown token with 403 "ACL not found"
}


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)

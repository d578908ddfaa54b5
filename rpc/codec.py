"""msgpack framing of RPC messages, with bounded sizes checked before decoding.

A request is `{"h": header, "b": body}`, a response `{"m": meta, "b": body}`. gRPC already limits
message size; we also cap what msgpack may allocate, so a hostile peer cannot make us build a
huge object from a small frame (Consul PR #23898).
"""

from __future__ import annotations

from typing import Any

import msgpack

from meshfed.rpc.errors import invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.limits import MAX_MESSAGE_BYTES


def _unpack(data: bytes) -> Any:
    if len(data) > MAX_MESSAGE_BYTES:
        raise invalid(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit")
    try:
        # unpackb caps every container/string length at len(data), so a small frame cannot
        # announce a huge allocation.
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises many types on junk
        raise invalid(f"undecodable message: {exc}") from None


def _pack(message: Any) -> bytes:
    # A value msgpack cannot carry (an integer beyond 64 bits, a lone surrogate, nesting past 511
    # levels) is the caller's input, not a server fault: INVALID_ARGUMENT, never a traceback.
    try:
        return msgpack.packb(message, use_bin_type=True)
    except (OverflowError, UnicodeEncodeError, ValueError, TypeError) as exc:
        raise invalid(f"message cannot be encoded: {exc}") from None


def encode_request(header: RequestHeader, body: Any) -> bytes:
    return _pack({"h": header.to_wire(), "b": body})


def decode_request(data: bytes) -> tuple[RequestHeader, Any]:
    message = _unpack(data)
    if not isinstance(message, dict):
        raise invalid("request must be a map")
    return RequestHeader.from_wire(message.get("h")), message.get("b")


def encode_response(meta: QueryMeta, body: Any) -> bytes:
    return _pack({"m": meta.to_wire(), "b": body})


def decode_response(data: bytes) -> tuple[QueryMeta, Any]:
    message = _unpack(data)
    if not isinstance(message, dict):
        raise invalid("response must be a map")
    return QueryMeta.from_wire(message.get("m")), message.get("b")


def encode_message(value: Any) -> bytes:
    """One message of a stream after its first (which is a request: header and body)."""
    return _pack(value)


def decode_message(data: bytes) -> Any:
    return _unpack(data)

"""The on-disk snapshot frame around `StateMachine.snapshot_data()`.

Layout (big-endian):

    magic "MFSN" (4) | version u16 (2) | payload length u64 (8) | msgpack payload | sha256 (32)

The digest covers everything before it (header and payload), so a flipped version or length
byte is caught as well as a damaged payload. The length field lets us tell a truncated file (a
crash mid-write, a short transfer to a lagging follower) from a corrupted one, and the version
lets a future layout be read next to this one.

Why sha256 rather than crc32: the snapshot is a few MB and sha256 runs at over 1 GB/s with
hashlib, so it costs a few milliseconds per snapshot, which is nothing next to writing and
fsyncing the file. crc32 would only save those milliseconds, and sha256 leaves no realistic chance
that a corrupted snapshot passes the check and is loaded as the state of a replica. The digest
also identifies a snapshot, so two replicas' snapshots can be compared by it. It is not an
authenticity check: the Raft transport is encrypted with the cluster key, and the disk is trusted.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import msgpack

SNAPSHOT_VERSION = 1
MAGIC = b"MFSN"
_HEADER = struct.Struct(">4sHQ")
_DIGEST_SIZE = hashlib.sha256().digest_size


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the message says which check failed."""


def encode_frame(data: dict[str, Any]) -> bytes:
    try:
        payload = msgpack.packb(data, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SnapshotError(f"snapshot data is not msgpack-able: {exc}") from exc
    framed = _HEADER.pack(MAGIC, SNAPSHOT_VERSION, len(payload)) + payload
    return framed + hashlib.sha256(framed).digest()


def decode_frame(blob: bytes) -> dict[str, Any]:
    if bytes(blob[: len(MAGIC)]) != MAGIC:
        if len(blob) < len(MAGIC) and MAGIC.startswith(bytes(blob)):
            raise SnapshotError(f"truncated: {len(blob)} bytes, the header alone is {_HEADER.size}")
        raise SnapshotError(f"bad magic {bytes(blob[:4])!r}, want {MAGIC!r}: not a meshfed snapshot")
    if len(blob) < _HEADER.size:
        raise SnapshotError(f"truncated: {len(blob)} bytes, the header alone is {_HEADER.size}")
    _, version, payload_length = _HEADER.unpack_from(blob)
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(
            f"unknown snapshot version {version}; this build reads version {SNAPSHOT_VERSION}"
        )
    expected = _HEADER.size + payload_length + _DIGEST_SIZE
    if len(blob) < expected:
        raise SnapshotError(f"truncated: {len(blob)} bytes, the header announces {expected}")
    if len(blob) > expected:
        raise SnapshotError(f"{len(blob) - expected} unexpected bytes after the checksum")
    framed = blob[: expected - _DIGEST_SIZE]
    if hashlib.sha256(framed).digest() != blob[expected - _DIGEST_SIZE :]:
        raise SnapshotError("checksum mismatch: the snapshot is corrupted")
    try:
        data = msgpack.unpackb(framed[_HEADER.size :], raw=False, strict_map_key=True)
    except Exception as exc:  # cannot happen after a good checksum unless the writer was broken
        raise SnapshotError(f"payload is not msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise SnapshotError(f"payload is a {type(data).__name__}, want a map")
    return data

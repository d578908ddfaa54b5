"""The cluster key (``encrypt``): making one and refusing a malformed one.

The key is mandatory because PySyncObj's Raft port unpickles what it receives: without it, anyone
who can reach the port can run code on the server.
"""

from __future__ import annotations

import base64
import binascii
import os

CLUSTER_KEY_SIZES = (16, 24, 32)
KEYGEN_BYTES = 32

MISSING_KEY_REASON = (
    "a cluster key is required because the Raft port speaks pickle; make one with `meshfed keygen`"
)


def generate_key() -> str:
    """A fresh cluster key in the form ``consul keygen`` prints (base64 of 32 random bytes)."""
    return base64.b64encode(os.urandom(KEYGEN_BYTES)).decode("ascii")


def validate_key(key: str) -> bytes:
    """Decode a cluster key, refusing anything that is not base64 of 16, 24 or 32 bytes."""
    if not isinstance(key, str) or not key:
        raise ValueError("the cluster key is empty; make one with `meshfed keygen`")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the cluster key is not valid base64; make one with `meshfed keygen`") from None
    if len(raw) not in CLUSTER_KEY_SIZES:
        raise ValueError(
            f"the cluster key decodes to {len(raw)} bytes; accepted: base64 of 16, 24 or 32 bytes"
            " (make one with `meshfed keygen`)"
        )
    return raw

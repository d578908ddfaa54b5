"""The Raft port's TCP transport: PySyncObj's, with a frame-size cap and a hook before each send.

Frame cap (issue #8 item 3). The library reads a 4-byte signed length prefix and then buffers
that many bytes before it decrypts anything, re-copying the whole buffer on every read. A peer
without the cluster key could declare a 2 GiB frame and make a server hold (and keep, through
allocator fragmentation) as much memory as it cared to send. We check every length prefix as soon
as it is in the buffer, before decryption, and drop the connection on the first one that no
legitimate peer would send.

Send hook: `server/raft/durability.py` syncs the journal before a follower's append
acknowledgement leaves, so the leader only counts entries that are on the follower's disk.

Connections are created inside the library (its TcpServer for incoming ones, `addNode` for
outgoing ones); we switch each new connection's class to `_CappedTcpConnection`, which only
overrides the library's read step, so no library logic is copied.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.transport import TCPTransport

log = logging.getLogger(__name__)

# The largest payload a legitimate peer puts into one frame. We pass both values to the library
# (appendEntriesBatchSizeBytes, logCompactionBatchSize), and `GuardedSyncObj` (syncobj.py) makes sure a message never
# carries more than one batch of entries: an entry that does not fit alone is sent in chunks of
# this size, and snapshots travel in chunks of this size too.
REPLICATION_CHUNK_BYTES = 64 * 1024
# Worst-case growth from payload to frame: pickle protocol 2 stores bytes as latin-1 text encoded
# as UTF-8 (up to 2x), zlib adds ~0.1 % on incompressible data, Fernet base64-encodes (4/3) and
# adds 73 bytes; message fields, the session key and entry tuples add a few hundred bytes.
LARGEST_LEGIT_FRAME = int(REPLICATION_CHUNK_BYTES * 2 * 1.002 * 4 / 3) + 4096
# Four times the worst legitimate frame: headroom for library changes, still a thousandth of the
# 2 GiB a signed 32-bit prefix can declare.
MAX_FRAME_BYTES = 4 * LARGEST_LEGIT_FRAME

_PREFIX = struct.Struct("i")  # the library's own prefix: native signed 32-bit


class FrameStats:
    """Process-wide count of connections dropped for an oversized frame (exported as a metric)."""

    oversized = 0


def first_bad_prefix(buffer: bytes, limit: int = MAX_FRAME_BYTES) -> int | None:
    """The first declared frame length in `buffer` outside 0..limit, or None if all are fine.

    Pure: walks the length prefixes of the frames the buffer holds (complete or not).
    """
    offset = 0
    while offset + _PREFIX.size <= len(buffer):
        (length,) = _PREFIX.unpack_from(buffer, offset)
        if length < 0 or length > limit:
            return length
        offset += _PREFIX.size + length
    return None


class _CappedTcpConnection(TcpConnection):
    def _TcpConnection__processRead(self) -> bool:  # noqa: N802 (the library's private name)
        more = bool(TcpConnection._TcpConnection__processRead(self))  # type: ignore[attr-defined]
        declared = first_bad_prefix(self._TcpConnection__readBuffer)  # type: ignore[attr-defined]
        if declared is None:
            return more
        FrameStats.oversized += 1
        if FrameStats.oversized == 1 or FrameStats.oversized % 1000 == 0:
            log.warning(
                "raft: dropped a connection that declared a %d-byte frame (limit %d; %d such connections so far)",
                declared, MAX_FRAME_BYTES, FrameStats.oversized,
            )
        self.disconnect()
        return False


class GuardedTransport(TCPTransport):
    """TCPTransport whose connections enforce MAX_FRAME_BYTES and whose sends pass a hook first."""

    def _onNewIncomingConnection(self, conn: TcpConnection) -> None:  # noqa: N802 (library name)
        conn.__class__ = _CappedTcpConnection
        super()._onNewIncomingConnection(conn)

    def addNode(self, node: Any) -> None:  # noqa: N802 (library name)
        super().addNode(node)
        conn = self._connections.get(node)
        if conn is not None:
            conn.__class__ = _CappedTcpConnection

    def send(self, node: Any, message: dict[str, Any]) -> bool:
        hook: Callable[[dict[str, Any]], None] | None = getattr(self._syncObj, "meshfed_before_send", None)
        if hook is not None:
            hook(message)
        return bool(super().send(node, message))

"""Restoring a backup through the Raft log: chunk commands, their staging, and the commit.

Why chunks: a backup is megabytes and one Raft entry of that size is a poor fit for PySyncObj.
Entries over 64 KiB are sent in chunks whose last-chunk test is wrong near multiples of 64 KiB
(reference/pysyncobj.md §3: followers raise EOFError), every entry is pickled twice and inflated
about 1.5x, and the last applied entry is carried inside every Raft snapshot. So the backup goes
into the log as `SnapshotRestoreChunk` commands of at most `CHUNK_BYTES`, ordinary small commands
that the group commit batches and forwards from a follower like any write, and then one
`SnapshotRestoreCommit` that assembles them, checks the SHA-256 of the whole file and replaces the
state. Every replica does exactly the same with the same entries, so they stay identical.

The staged chunks are state: a Raft snapshot taken between two chunks must carry them (they are in
`StateMachine.snapshot_data()` under `restore_staging`), or a replica restarted from that snapshot
would miss chunks the others have and the commit would diverge. One restore is staged at a time:
chunk 0 of a new restore id discards an abandoned one (a client that died half-way); a chunk or
commit of a restore that is no longer staged is refused, never mixed into another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# 16 KiB: the group commit packs two chunks (32 KiB) into one 48 KiB batch, and even pickle's
# ~1.5x inflation of binary data keeps such an entry under PySyncObj's 64 KiB chunking edge.
CHUNK_BYTES = 16 * 1024
MAX_BACKUP_BYTES = 1024 * 1024 * 1024  # the state must fit in RAM on every server anyway
MAX_CHUNKS = MAX_BACKUP_BYTES // CHUNK_BYTES

TAG_RESTORE_CHUNK = "snap.chunk/1"
TAG_RESTORE_COMMIT = "snap.restore/1"

Problem = tuple[str, str]


@dataclass(frozen=True)
class SnapshotRestoreChunk:
    """Bytes `seq` of `total` of the backup `restore_id` (a random id chosen by the proposer)."""

    restore_id: str
    seq: int
    total: int
    data: bytes


@dataclass(frozen=True)
class SnapshotRestoreCommit:
    """Assemble the staged chunks of `restore_id`, check `sha256` (hex, of the whole backup file)
    and replace the state with the backup's. With `abort`, drop the staged chunks instead (an
    upload that failed half-way must not leave megabytes in memory and in every Raft snapshot)."""

    restore_id: str
    total: int
    sha256: str
    abort: bool = False


RESTORE_COMMANDS: tuple[type, ...] = (SnapshotRestoreChunk, SnapshotRestoreCommit)

RESTORE_TAGS: dict[type, str] = {
    SnapshotRestoreChunk: TAG_RESTORE_CHUNK,
    SnapshotRestoreCommit: TAG_RESTORE_COMMIT,
}

RESTORE_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    TAG_RESTORE_CHUNK: lambda body: SnapshotRestoreChunk(
        restore_id=body["restore_id"], seq=body["seq"], total=body["total"], data=body["data"]
    ),
    TAG_RESTORE_COMMIT: lambda body: SnapshotRestoreCommit(
        restore_id=body["restore_id"], total=body["total"], sha256=body["sha256"], abort=body.get("abort", False)
    ),
}


def restore_shape_problem(command: Any) -> Problem | None:
    """(field, message) for a malformed restore command, else None. Types are checked already."""
    if not command.restore_id:
        return "RestoreID", "missing restore id"
    if not 1 <= command.total <= MAX_CHUNKS:
        return "Total", f"Total: {command.total} chunks, want 1..{MAX_CHUNKS} (backups up to {MAX_BACKUP_BYTES} bytes)"
    if isinstance(command, SnapshotRestoreChunk):
        if not 0 <= command.seq < command.total:
            return "Seq", f"Seq: chunk {command.seq} of {command.total}"
        if len(command.data) > CHUNK_BYTES:
            return "Data", f"Data: {len(command.data)} bytes, a chunk holds at most {CHUNK_BYTES}"
    elif len(command.sha256) != 64 and not command.abort:
        return "SHA256", "SHA256: want 64 hex digits"
    return None


class RestoreRejected(Exception):
    """A restore command that cannot apply; the staging is left as the message says."""


class RestoreStaging:
    """The chunks of the one restore being uploaded. Used under the machine's apply lock."""

    def __init__(self) -> None:
        self.restore_id = ""
        self.total = 0
        self.chunks: dict[int, bytes] = {}

    def stage(self, chunk: SnapshotRestoreChunk) -> int:
        """Keep a chunk; returns how many of its restore's chunks are staged. A re-sent chunk
        (a retry after an unknown outcome) replaces itself."""
        if chunk.restore_id != self.restore_id:
            if chunk.seq != 0:
                raise RestoreRejected(
                    f"restore {chunk.restore_id!r} is not being staged (chunk 0 never arrived, or another "
                    f"restore replaced it): start again"
                )
            self.restore_id, self.total, self.chunks = chunk.restore_id, chunk.total, {}
        if chunk.total != self.total:
            raise RestoreRejected(f"chunk {chunk.seq} says {chunk.total} chunks, chunk 0 said {self.total}")
        self.chunks[chunk.seq] = bytes(chunk.data)
        return len(self.chunks)

    def take(self, commit: SnapshotRestoreCommit) -> bytes:
        """The assembled backup file, once complete and matching its digest. The staging is
        cleared either way, unless the commit belongs to a restore that is not staged."""
        if commit.restore_id != self.restore_id:
            raise RestoreRejected(f"restore {commit.restore_id!r} is not being staged: nothing to commit")
        chunks, total = self.chunks, self.total
        self.clear()
        if commit.total != total:
            raise RestoreRejected(f"commit says {commit.total} chunks, the upload said {total}")
        missing = [seq for seq in range(total) if seq not in chunks]
        if missing:
            raise RestoreRejected(f"{len(missing)} of {total} chunks missing (first: {missing[0]})")
        blob = b"".join(chunks[seq] for seq in range(total))
        if hashlib.sha256(blob).hexdigest() != commit.sha256.lower():
            raise RestoreRejected("checksum mismatch: the assembled snapshot differs from the one uploaded")
        return blob

    def abort(self, restore_id: str) -> bool:
        """Drop the staging if it is `restore_id`'s; another restore's upload is left alone."""
        if restore_id != self.restore_id:
            return False
        self.clear()
        return True

    def clear(self) -> None:
        self.restore_id, self.total, self.chunks = "", 0, {}

    def export(self) -> dict[str, Any] | None:
        if not self.restore_id:
            return None
        return {"restore_id": self.restore_id, "total": self.total,
                "chunks": [[seq, self.chunks[seq]] for seq in sorted(self.chunks)]}

    @classmethod
    def from_export(cls, data: Any) -> RestoreStaging:
        """Inverse of `export` (None: nothing staged). Raises ValueError on malformed data."""
        staging = cls()
        if data is None:
            return staging
        if not isinstance(data, dict) or not isinstance(data.get("restore_id"), str):
            raise ValueError("restore_staging must be a map with restore_id, total and chunks")
        total = data.get("total")
        if isinstance(total, bool) or not isinstance(total, int) or not 1 <= total <= MAX_CHUNKS:
            raise ValueError(f"restore_staging total is {total!r}")
        for item in data.get("chunks") or []:
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], int)
                    or not isinstance(item[1], bytes) or not 0 <= item[0] < total):
                raise ValueError(f"restore_staging chunk {item!r:.60} is not [seq, bytes]")
            staging.chunks[item[0]] = item[1]
        staging.restore_id, staging.total = data["restore_id"], total
        return staging


def chunk_commands(restore_id: str, blob: bytes) -> tuple[list[SnapshotRestoreChunk], SnapshotRestoreCommit]:
    """The commands that carry `blob` through the log (what the snapshot endpoint proposes)."""
    if len(blob) > MAX_BACKUP_BYTES:
        raise ValueError(f"snapshot is {len(blob)} bytes; at most {MAX_BACKUP_BYTES} can be restored")
    total = max(1, -(-len(blob) // CHUNK_BYTES))
    chunks = [
        SnapshotRestoreChunk(restore_id, seq, total, blob[seq * CHUNK_BYTES:(seq + 1) * CHUNK_BYTES])
        for seq in range(total)
    ]
    return chunks, SnapshotRestoreCommit(restore_id, total, hashlib.sha256(blob).hexdigest())

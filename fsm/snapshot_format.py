"""The backup file of `GET /v1/snapshot` / `meshfed snapshot save`: what an operator keeps.

Layout (big-endian), the same framing as the Raft snapshot (fsm/snapshot.py) under its own magic,
so neither file can be mistaken for the other:

    magic "MFBK" (4) | version u16 (2) | payload length u64 (8) | msgpack payload | sha256 (32)

The payload is a map `{"meta": {...}, "machine": StateMachine.snapshot_data()}`:
- `meta`: `datacenter`, `index` (the highest index the state holds, what X-Consul-Index said),
  `term` (the Raft term of the server that saved it; 0 when unknown), `created` (unix seconds,
  the saving server's clock), `meshfed_version`. Informational: a restore reads only `machine`.
- `machine`: the state machine's own snapshot data, minus any half-staged restore
  (`restore_staging`), which belongs to the saving cluster's log, not to the backup.

Why a checksum over header and payload: a backup travels (object stores, scp, tapes) and a flipped
bit must be refused before it replaces a datacenter's state, never half-applied. The digest also
names a backup, which `inspect` prints so an operator can match a file to the one they saved.

Compatibility: a reader refuses (a) another magic, naming what the file looks like, (b) a version
it does not know, (c) tables it does not know, since dropping them would silently lose data.
Fields a newer writer adds inside known records are ignored by the record decoders, as in the log.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from meshfed.fsm.snapshot import MAGIC as RAFT_SNAPSHOT_MAGIC
from meshfed.fsm.snapshot import SnapshotError
from meshfed.fsm.state import TABLES

BACKUP_VERSION = 1
MAGIC = b"MFBK"
_HEADER = struct.Struct(">4sHQ")
_DIGEST_SIZE = hashlib.sha256().digest_size
_GZIP_MAGIC = b"\x1f\x8b"
# Keys of the exported tables map that are not tables (fsm/state.py export, fsm/acl/store.py).
_TABLE_MAP_EXTRAS = frozenset({"table_index", "acl_bootstrap_index"})
STAGING_KEY = "restore_staging"


class BackupError(SnapshotError):
    """A backup that cannot be restored or read; the message names the check that failed."""


@dataclass(frozen=True)
class Backup:
    meta: dict[str, Any]
    machine: dict[str, Any]
    size: int
    sha256: str


def encode_backup(machine: dict[str, Any], meta: dict[str, Any]) -> bytes:
    """Frame `StateMachine.snapshot_data()` output and `meta` as a backup file."""
    data = {k: v for k, v in machine.items() if k != STAGING_KEY}
    try:
        payload = msgpack.packb({"meta": dict(meta), "machine": data}, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BackupError(f"snapshot data is not msgpack-able: {exc}") from exc
    framed = _HEADER.pack(MAGIC, BACKUP_VERSION, len(payload)) + payload
    return framed + hashlib.sha256(framed).digest()


def _check_magic(blob: bytes) -> None:
    head = bytes(blob[: len(MAGIC)])
    if head == MAGIC:
        return
    if not blob:
        raise BackupError("empty: no snapshot data in the request body")
    if len(blob) < len(MAGIC) and MAGIC.startswith(head):
        raise BackupError(f"truncated: {len(blob)} bytes, the header alone is {_HEADER.size}")
    if head == RAFT_SNAPSHOT_MAGIC:
        raise BackupError("this is a server's Raft snapshot file (raft/snapshot), not a backup made by "
                          "`meshfed snapshot save`")
    if head.startswith(_GZIP_MAGIC):
        raise BackupError("this is a gzip archive (a Consul snapshot?), not a meshfed backup")
    raise BackupError(f"bad magic {head!r}, want {MAGIC!r}: not a meshfed backup")


def decode_backup(blob: bytes) -> Backup:
    """Check and unpack a backup file. Raises BackupError naming the problem and nothing else."""
    _check_magic(blob)
    if len(blob) < _HEADER.size:
        raise BackupError(f"truncated: {len(blob)} bytes, the header alone is {_HEADER.size}")
    _, version, payload_length = _HEADER.unpack_from(blob)
    if version != BACKUP_VERSION:
        raise BackupError(f"incompatible: backup format version {version}; this build reads version "
                          f"{BACKUP_VERSION}")
    expected = _HEADER.size + payload_length + _DIGEST_SIZE
    if len(blob) < expected:
        raise BackupError(f"truncated: {len(blob)} bytes, the header announces {expected}")
    if len(blob) > expected:
        raise BackupError(f"{len(blob) - expected} unexpected bytes after the checksum")
    framed = bytes(blob[: expected - _DIGEST_SIZE])
    digest = hashlib.sha256(framed).digest()
    if digest != bytes(blob[expected - _DIGEST_SIZE :]):
        raise BackupError("checksum mismatch: the snapshot is corrupted")
    try:
        payload = msgpack.unpackb(framed[_HEADER.size :], raw=False, strict_map_key=True)
    except Exception as exc:  # only a broken writer gets past the checksum with junk
        raise BackupError(f"payload is not msgpack: {type(exc).__name__}: {exc}") from exc
    meta, machine = _parts(payload)
    return Backup(meta=meta, machine=machine, size=len(blob), sha256=digest.hex())


def _parts(payload: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("machine"), dict):
        raise BackupError("payload must be a map with 'meta' and 'machine'")
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    machine = payload["machine"]
    tables = machine.get("tables")
    if not isinstance(tables, dict):
        raise BackupError("machine data has no 'tables' map")
    unknown = sorted(str(k) for k in tables if k not in TABLES and k not in _TABLE_MAP_EXTRAS)
    saved_index = tables.get("table_index")
    if isinstance(saved_index, dict):
        unknown += sorted(str(k) for k in saved_index if k not in TABLES and str(k) not in unknown)
    if unknown:
        raise BackupError(f"incompatible: the backup holds table(s) {', '.join(unknown)} that this "
                          f"version does not know; restore it with the version that saved it "
                          f"({meta.get('meshfed_version', 'unknown')})")
    if STAGING_KEY in machine:
        raise BackupError(f"machine data carries '{STAGING_KEY}': not a backup this format writes")
    return meta, machine


def state_index(machine: dict[str, Any]) -> int:
    """The highest index the saved state holds: the index space writes continue above."""
    index = _int(machine.get("last_index")) + _int(machine.get("index_offset"))
    tables = machine.get("tables") or {}
    saved = tables.get("table_index") if isinstance(tables, dict) else None
    if isinstance(saved, dict):
        index = max([index, *(_int(v) for v in saved.values())])
    return index


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def table_counts(machine: dict[str, Any]) -> dict[str, int]:
    """Rows per table, in TABLES order, for `meshfed snapshot inspect`."""
    tables = machine.get("tables") or {}
    counts = {}
    for table in TABLES:
        rows = tables.get(table)
        counts[table] = len(rows) if isinstance(rows, list) else 0
    return counts

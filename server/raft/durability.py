"""When journal entries reach the disk, and what happens when the disk is full.

Sync modes (config `raft_journal_sync`, issue #8 item 10):
- "always" (default): an acknowledgement means "on the disk of a majority". The leader syncs its
  journal at the start of every tick, before it counts itself toward a commit; a follower syncs
  before its append acknowledgement leaves (transport send hook). One sync covers every entry
  appended since the last one, and group commit packs up to 256 commands into an entry, so the
  cost is amortised over the commands an entry carries.
- "interval": the library's behaviour plus a sync every `JOURNAL_SYNC_INTERVAL`. An ack then
  means "in the page cache of a majority": it survives kill -9 of every process, but a power
  loss of a majority can lose up to that interval of acknowledged writes.

Full disk (issue #8 item 2). PySyncObj memory-maps the journal and grows it with ftruncate, which
leaves the new pages unallocated; writing into one on a full filesystem raises SIGBUS and kills the
process without a log line. `JournalGuard` wraps the journal's `add`: it allocates the bytes a
record will occupy (fallocate) before the library writes into the map, and raises
`DiskFullError` instead when that fails. `reserve` lets the leader refuse a proposal up front,
so the client gets an error rather than a proposal the library would drop half-way.

Trace: with MESHFED_RAFT_DURABILITY_TRACE set to a file path, every sync and every ack is appended
as "<event> <raft index> <CLOCK_MONOTONIC ns>" (system-wide clock, comparable across processes),
so a test can check from real processes that no write was acknowledged before its entry was
synced on a majority.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import threading
import time
import types
from typing import Any

from pysyncobj.journal import FileJournal

log = logging.getLogger(__name__)

SYNC_ALWAYS = "always"
SYNC_INTERVAL = "interval"
SYNC_MODES = (SYNC_ALWAYS, SYNC_INTERVAL)
JOURNAL_SYNC_INTERVAL = 1.0
RECORD_OVERHEAD = 24  # the library's record framing: two 4-byte lengths, index and term (8 + 8)
# Allocated ahead of the journal's end before a proposal is accepted: room for the entries
# already in flight plus this one, so the tick thread never meets a full disk mid-batch.
RESERVE_AHEAD_BYTES = 1024 * 1024
# A proposal finding less room than this beyond itself allocates RESERVE_AHEAD_BYTES again: more
# than the entries that can be in flight (server/raft/node.py: 2 batches of at most 48 KiB).
RESERVE_MIN_AHEAD_BYTES = 256 * 1024
TRACE_ENV = "MESHFED_RAFT_DURABILITY_TRACE"
FALLOC_FL_KEEP_SIZE = 0x01  # linux/falloc.h; os.posix_fallocate cannot pass it
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_fallocate_unsupported_logged = False


class DiskFullError(OSError):
    """The journal cannot grow: the write is refused, nothing was acknowledged."""


class JournalGuard:
    """Owns the journal's durability: allocation before writes, syncs, and the full-disk state."""

    def __init__(self, journal: FileJournal | None, mode: str = SYNC_ALWAYS) -> None:
        if mode not in SYNC_MODES:
            raise ValueError(f"raft_journal_sync must be one of {', '.join(SYNC_MODES)}, got {mode!r}")
        self.mode = mode
        self._journal = journal
        self._dirty = False
        self._lock = threading.Lock()  # reserve() runs on the event loop, the rest on the tick thread
        self.disk_full = False
        self.disk_full_refusals = 0
        self.syncs = 0
        self._allocated: tuple[object, int, int] | None = None  # see `allocate`
        trace_path = os.environ.get(TRACE_ENV, "")
        # 0600 like server/raft/trace.py's files: a trace is the operator's, not every local user's.
        self._trace = (os.fdopen(os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", buffering=1)
                       if trace_path else None)
        if journal is not None:
            self._wrap_add(journal)

    # ---- allocation ------------------------------------------------------------------------------

    def _wrap_add(self, journal: FileJournal) -> None:
        original = journal.add
        guard = self

        def add(self: FileJournal, command: bytes, idx: int, term: int) -> None:
            offset = self._FileJournal__currentOffset  # type: ignore[attr-defined]
            guard.allocate(offset, len(command) + RECORD_OVERHEAD)
            original(command, idx, term)
            guard._dirty = True

        journal.add = types.MethodType(add, journal)  # type: ignore[method-assign]

    def allocate(self, offset: int, size: int, ahead: int = 0) -> None:
        """Make [offset, offset+size) of the journal file real blocks, or raise DiskFullError;
        when that takes a syscall, allocate `ahead` more bytes with it.

        Invariant kept here: `_allocated` is (the journal's open file object, lo, hi) with every
        byte of [lo, hi) of that file backed by blocks this guard allocated. The library only ever
        grows the file, so blocks stay; a compaction or re-open gives a new file object, and then
        nothing is known. A range inside it needs no syscall: without this, every write paid two
        fallocates (the proposal's reservation and the append), contending with the journal's
        msync for the inode.
        """
        assert self._journal is not None
        end = offset + size
        with self._lock:
            file = _journal_file(self._journal)
            known = self._allocated
            if known is not None and known[0] is file and known[1] <= offset and end <= known[2]:
                return
            end += ahead
            try:
                preallocate(self._journal, offset, end - offset)
            except DiskFullError as exc:
                self._set_full(True, exc)
                raise
            self._set_full(False, None)
            if known is not None and known[0] is file and offset <= known[2] and end >= known[1]:
                self._allocated = (file, min(offset, known[1]), max(end, known[2]))
            else:
                self._allocated = (file, offset, end)

    def reserve(self, payload_bytes: int) -> None:
        """Called before a proposal: allocate room for it ahead of the journal's end."""
        if self._journal is None:
            return
        end = int(self._journal._FileJournal__currentOffset)  # type: ignore[attr-defined]
        try:
            self.allocate(end, payload_bytes + RECORD_OVERHEAD + RESERVE_MIN_AHEAD_BYTES,
                          ahead=RESERVE_AHEAD_BYTES - RESERVE_MIN_AHEAD_BYTES)
        except DiskFullError:
            self.disk_full_refusals += 1
            raise
        except (OSError, ValueError):
            # The tick thread is re-opening the journal (compaction): skip the early check; the
            # allocation in `add` still stands between the library and a SIGBUS.
            log.debug("raft: journal reservation skipped", exc_info=True)

    def _set_full(self, full: bool, exc: OSError | None) -> None:
        if full == self.disk_full:
            return
        self.disk_full = full
        if full:
            log.error("raft: the data directory is full (%s): refusing writes until space returns", exc)
        else:
            log.warning("raft: disk space is back: accepting writes again")

    # ---- syncs -------------------------------------------------------------------------------------

    def sync(self, last_index: int) -> None:
        """msync the journal's map if anything was appended since the last sync (MS_SYNC: data on disk)."""
        if self._journal is None or not self._dirty:
            return
        self._dirty = False
        try:
            self._journal.flush()
        except (OSError, ValueError):
            self._dirty = True
            log.warning("raft journal sync failed", exc_info=True)
            raise
        self.syncs += 1
        self.trace("sync", last_index)

    def trace(self, event: str, index: int) -> None:
        if self._trace is not None:
            self._trace.write(f"{event} {index} {time.monotonic_ns()}\n")

    def close(self) -> None:
        if self._trace is not None:
            self._trace.close()
            self._trace = None


def _journal_file(journal: FileJournal) -> object:
    return journal._FileJournal__journalFile._ResizableFile__f  # type: ignore[attr-defined]


def preallocate(journal: FileJournal, offset: int, size: int) -> None:
    """Allocate real blocks under [offset, offset+size) of a journal's file, or raise DiskFullError.

    The library writes through an mmap; a page with no block behind it on a full filesystem
    would be SIGBUS at the moment of the write. After this, the write cannot fail.
    """
    fileno = _journal_file(journal).fileno()  # type: ignore[attr-defined]
    # KEEP_SIZE: the library takes the file's size (mmap.size() is fstat) as the size of its map;
    # growing the file behind its back would make it write past the end of the map.
    if _libc.fallocate(fileno, FALLOC_FL_KEEP_SIZE, ctypes.c_int64(offset), ctypes.c_int64(size)) == 0:
        return
    code = ctypes.get_errno()
    if code in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(code, f"raft journal: disk full ({os.strerror(code)})")
    if code in (errno.EOPNOTSUPP, errno.ENOSYS):
        # A filesystem without fallocate: writing on beats refusing every write, but a full disk
        # there is a SIGBUS again, so say so once.
        global _fallocate_unsupported_logged
        if not _fallocate_unsupported_logged:
            _fallocate_unsupported_logged = True
            log.warning("raft: the data directory's filesystem has no fallocate: a full disk will crash the server")
        return
    raise OSError(code, f"fallocate on the raft journal failed: {os.strerror(code)}")


def is_append_ack(message: dict[str, Any]) -> bool:
    """A follower's successful reply to AppendEntries: the message the leader counts toward a commit."""
    return message.get("type") == "next_node_idx" and bool(message.get("success"))

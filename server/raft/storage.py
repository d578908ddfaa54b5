"""Crash-safe on-disk storage for PySyncObj: our snapshot file and journal rewrites.

PySyncObj 0.3.17 as shipped loses acknowledged writes on a whole-cluster kill -9
(reference/pysyncobj.md §2.4). Three windows cause it; this module closes each one:

1. The forked dump writer outlives a killed parent and installs a dump newer than the journal.
   -> We pass custom serializer hooks (no fork): `SnapshotWriter` writes the snapshot on a thread
      of its own, fsyncs it, and installs it (rename, directory fsync) from `check`, on the tick
      thread, before the library is told the snapshot is done (only then does it truncate the
      journal).
2. On start-up the library clears the *whole* journal when it does not begin exactly at the dump.
   -> `server/raft/node.py` replaces that step with `reconcile_journal`, which keeps every journal entry
      after the snapshot index.
3. Journal compaction (`FileJournal.deleteEntriesTo`) rewrites the file in place: clear, then
   append the kept entries one by one. A kill in between leaves a journal missing its tail.
   -> `make_compaction_safe` replaces it with a rewrite into a temporary file that is fsynced and
      renamed over the journal (atomic), then re-opened in place.

Only the server/raft package knows PySyncObj's file formats and private names; the
regression tests in tests/unit/test_raft_storage.py pin the behaviour we rely on.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.journal import FIRST_RECORD_OFFSET, FileJournal

from meshfed.fsm.snapshot import SnapshotError, decode_frame, encode_frame
from meshfed.server.raft.durability import RECORD_OVERHEAD, preallocate

log = logging.getLogger(__name__)

# (command bytes, raft index, raft term) as PySyncObj stores log entries.
Entry = tuple[bytes, int, int]

SNAPSHOT_FORMAT = "meshfed-raft-snapshot"
# After a failed snapshot (typically a full disk) the library retries on every tick, re-encoding the
# whole state each time; wait this long instead, and log the failure once per streak.
SNAPSHOT_RETRY_AFTER_FAILURE = 5.0
# Each server stretches its snapshot threshold and interval by a random part of this fraction,
# drawn again after every snapshot. Servers started together and applying the same log otherwise
# all snapshot at the same entry, or the same second: six servers of two DCs were seen writing
# within 0.4 s of each other, and a leader lost its leadership in that instant.
SNAPSHOT_JITTER = 0.5


def jittered_schedule(threshold: int, interval: float, rng: random.Random) -> tuple[int, float]:
    """(entries, seconds) until this server's next snapshot: never sooner than configured."""
    return (int(threshold * (1 + rng.random() * SNAPSHOT_JITTER)),
            interval * (1 + rng.random() * SNAPSHOT_JITTER))


def fsync_directory(path: str) -> None:
    """Make a rename inside `path` durable (a rename is a directory update)."""
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def as_entry(value: Sequence[Any]) -> Entry:
    command, index, term = value
    return (bytes(command), int(index), int(term))


def write_snapshot(path: str, fsm_data: dict[str, Any], last: Entry, prev: Entry, cluster: Sequence[str]) -> int:
    """Write our snapshot frame to `path` and fsync it; returns its size in bytes."""
    blob = encode_frame(
        {
            "format": SNAPSHOT_FORMAT,
            "fsm": fsm_data,
            "raft": {"last": list(last), "prev": list(prev), "cluster": sorted(cluster)},
        }
    )
    with open(path, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    return len(blob)


def read_snapshot(path: str) -> tuple[dict[str, Any], Entry, Entry, list[str]]:
    """Read and verify a snapshot; raises SnapshotError naming what is wrong."""
    with open(path, "rb") as f:
        blob = f.read()
    data = decode_frame(blob)
    if data.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path}: not a meshfed raft snapshot")
    raft = data["raft"]
    return data["fsm"], as_entry(raft["last"]), as_entry(raft["prev"]), list(raft["cluster"])


class SnapshotWriter:
    """PySyncObj serializer hooks (`serializer`, `deserializer`, `serializeChecker`).

    The library calls `serialize(tmp_path, (last, prev, cluster))` on its tick thread right after
    applying `last`, so the state machine is exactly at that entry. `serialize` only fixes that
    state (`capture_fsm`: references to immutable records, milliseconds) and hands the costly part
    (conversion, encoding, write, fsync: seconds for a large state) to a thread of its own, so the
    tick thread goes on sending heartbeats; a snapshot written on it cost the leader its
    leadership. `check` is polled on the next ticks: SERIALIZING while the thread works, then it
    installs the file (rename, directory fsync) and reports SUCCESS, which is what makes the
    library truncate the journal, so the journal is never shorter than the installed snapshot.

    The library renames `tmp_path` over the dump itself right after `serialize` returns; we never
    create `tmp_path` (that rename then fails, which the library ignores when a checker is set),
    and write to `<dump>.writing` instead, installed only by `check`.

    Invariant kept by `generation`: a snapshot installed from the leader, or loaded at start,
    while our thread was writing makes that write stale (it is older than the state now on disk);
    `check` throws it away instead of installing it over the newer dump.
    """

    def __init__(
        self,
        dump_path: str,
        capture_fsm: Callable[[], Callable[[], dict[str, Any]]],
        restore_fsm: Callable[[dict[str, Any]], None],
        on_written: Callable[[int, int], None] | None = None,
    ) -> None:
        self._dump_path = dump_path
        self._writing_path = dump_path + ".writing"
        self._capture_fsm = capture_fsm
        self._restore_fsm = restore_fsm
        self._on_written = on_written
        self._job: _SnapshotJob | None = None
        self._generation = 0  # bumped by every load of a dump (see the class docstring)
        self._failed = False
        self._failures_in_a_row = 0
        self._last_failure = 0.0
        if dump_path and os.path.exists(self._writing_path):
            os.remove(self._writing_path)  # a write cut short by a crash: never installed

    def serialize(self, tmp_path: str, raft_data: Sequence[Any]) -> None:
        last, prev, cluster = raft_data
        cluster_ids = [getattr(node, "id", str(node)) for node in cluster]
        if os.path.exists(tmp_path):
            os.remove(tmp_path)  # the library would install whatever it finds there
        if self._failures_in_a_row and time.monotonic() - self._last_failure < SNAPSHOT_RETRY_AFTER_FAILURE:
            self._failed = True
            raise OSError("raft snapshot: waiting after the last failure before retrying")
        render = self._capture_fsm()
        job = _SnapshotJob(self._writing_path, render, as_entry(last), as_entry(prev), cluster_ids, self._generation)
        self._job = job
        job.thread.start()

    def check(self) -> int:
        if self._failed:
            self._failed = False
            return SERIALIZER_STATE.FAILED
        job = self._job
        if job is None:
            return SERIALIZER_STATE.NOT_SERIALIZING
        if job.thread.is_alive():
            return SERIALIZER_STATE.SERIALIZING
        self._job = None
        if job.error is not None:
            return self._write_failed(job.error)
        if job.generation != self._generation:
            log.info("raft snapshot at index %d dropped: a newer snapshot was installed meanwhile", job.last[1])
            os.remove(self._writing_path)
            return SERIALIZER_STATE.FAILED
        try:
            os.replace(self._writing_path, self._dump_path)
            fsync_directory(os.path.dirname(self._dump_path))
        except OSError as exc:
            return self._write_failed(exc)
        if self._failures_in_a_row:
            log.warning("raft snapshot written again after %d failed attempts", self._failures_in_a_row)
            self._failures_in_a_row = 0
        if self._on_written is not None:
            self._on_written(job.last[1], job.size)
        return SERIALIZER_STATE.SUCCESS

    def _write_failed(self, error: BaseException) -> int:
        self._failures_in_a_row += 1
        self._last_failure = time.monotonic()
        if self._failures_in_a_row == 1:
            log.error("writing raft snapshot %s failed (%s); retrying every %.0fs", self._writing_path, error,
                      SNAPSHOT_RETRY_AFTER_FAILURE)
        # A half-written file would only keep a full disk full.
        if os.path.exists(self._writing_path):
            os.remove(self._writing_path)
        return SERIALIZER_STATE.FAILED

    def deserialize(self, path: str) -> tuple[Entry, Entry, list[str]]:
        fsm_data, last, prev, cluster = read_snapshot(path)
        self._restore_fsm(fsm_data)
        self._generation += 1
        return last, prev, cluster

    def wait(self, timeout: float | None = None) -> None:
        """Let a running write finish (tests, and a clean shutdown)."""
        job = self._job
        if job is not None:
            job.thread.join(timeout)


class _SnapshotJob:
    """One snapshot being converted and written off the tick thread."""

    def __init__(self, path: str, render: Callable[[], dict[str, Any]], last: Entry, prev: Entry,
                 cluster: list[str], generation: int) -> None:
        self.last = last
        self.size = 0
        self.error: BaseException | None = None
        self.generation = generation
        self.thread = threading.Thread(target=self._run, args=(path, render, prev, cluster),
                                       name=f"raft-snapshot-{last[1]}", daemon=True)

    def _run(self, path: str, render: Callable[[], dict[str, Any]], prev: Entry, cluster: list[str]) -> None:
        try:
            self.size = write_snapshot(path, render(), self.last, prev, cluster)
        except BaseException as exc:  # noqa: BLE001 (reported by check() on the tick thread)
            self.error = exc


def rewrite_journal(journal: FileJournal, path: str, entries: Sequence[Entry]) -> None:
    """Atomically replace the journal file's records with `entries` and re-open it in place.

    The in-memory object stays the same (PySyncObj holds a reference to it), so we re-run the
    library's own constructor on it after the rename: the file format stays the library's.
    """
    journal.onOneSecondTimer()  # persist a pending commit index to the .meta file first
    tmp = path + ".rewrite"
    for stale in (tmp, tmp + ".meta"):
        if os.path.exists(stale):
            os.remove(stale)
    fresh = FileJournal(tmp)
    try:
        # Allocate the whole file first: the library writes through an mmap, and a page without a
        # block behind it on a full disk is a SIGBUS, not an error (server/raft/durability.py).
        preallocate(fresh, 0, FIRST_RECORD_OFFSET + sum(len(e[0]) + RECORD_OVERHEAD for e in entries))
        for entry in entries:
            fresh.add(*entry)
    except OSError:
        fresh._destroy()
        for leftover in (tmp, tmp + ".meta"):
            if os.path.exists(leftover):
                os.remove(leftover)
        log.error("raft: journal compaction failed; the journal stays as it was", exc_info=True)
        raise
    fresh._destroy()  # flushes the mmap (msync) and closes it
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    journal._destroy()
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(path))
    FileJournal.__init__(journal, path)


def make_compaction_safe(journal: FileJournal, path: str) -> None:
    """Route the library's prefix truncation through `rewrite_journal` (window 3 above)."""

    def delete_entries_to(self: FileJournal, entry_to: int) -> None:
        kept = [self[i] for i in range(entry_to, len(self))]
        rewrite_journal(self, path, kept)

    journal.deleteEntriesTo = types.MethodType(delete_entries_to, journal)  # type: ignore[method-assign]


def reconcile_journal(journal_entries: Sequence[Entry], last: Entry, prev: Entry, clear: bool) -> list[Entry]:
    """The journal a node must hold after loading a snapshot that ends at `last`.

    Pure decision (unit-tested): the snapshot's last two entries, followed by every journal entry
    after the snapshot index, as long as the journal agrees with the snapshot about the term at
    that index and has no gap. The library instead threw the whole journal away whenever it did
    not start exactly at the snapshot, which is what lost acknowledged writes.
    """
    wanted = [prev, last]
    if clear:
        return wanted
    snapshot_index, snapshot_term = last[1], last[2]
    at_snapshot = [e for e in journal_entries if e[1] == snapshot_index]
    if at_snapshot and at_snapshot[0][2] != snapshot_term:
        log.warning("journal disagrees with snapshot at index %d: dropping the journal tail", snapshot_index)
        return wanted
    expected = snapshot_index + 1
    for entry in journal_entries:
        if entry[1] < expected:
            continue
        if entry[1] != expected:
            log.warning("journal has a gap after index %d: dropping entries from %d", expected - 1, entry[1])
            break
        wanted.append(entry)
        expected += 1
    return wanted

"""Journal durability (issue #8 items 2 and 10) on a real PySyncObj FileJournal in a temporary directory.

The full disk is simulated by making fallocate fail with ENOSPC: the integration test
(tests/integration/test_raft_faults.py) does it for real on a tmpfs.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

import pytest
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.journal import FileJournal

from meshfed.server.raft import durability
from meshfed.server.raft.durability import TRACE_ENV, DiskFullError, JournalGuard
from meshfed.server.raft.storage import SnapshotWriter


class _FullDisk:
    """Stands in for libc: every fallocate fails with ENOSPC."""

    @staticmethod
    def fallocate(*_: Any) -> int:
        ctypes.set_errno(errno.ENOSPC)
        return -1


def test_a_sync_covers_everything_appended_since_the_last_and_is_traced(tmp_path: Any, monkeypatch: Any) -> None:
    trace = tmp_path / "trace"
    monkeypatch.setenv(TRACE_ENV, str(trace))
    journal = FileJournal(str(tmp_path / "journal"))
    guard = JournalGuard(journal)
    guard.sync(0)
    assert guard.syncs == 0  # nothing appended yet
    journal.add(b"a", 1, 1)
    journal.add(b"b", 2, 1)
    guard.sync(2)
    guard.sync(2)
    assert guard.syncs == 1
    guard.close()
    assert [line.split()[:2] for line in trace.read_text().splitlines()] == [["sync", "2"]]


def test_a_full_disk_refuses_the_append_and_recovers(tmp_path: Any, monkeypatch: Any) -> None:
    journal = FileJournal(str(tmp_path / "journal"))
    guard = JournalGuard(journal)
    journal.add(b"before", 1, 1)
    with monkeypatch.context() as patch:
        patch.setattr(durability, "_libc", _FullDisk())
        with pytest.raises(DiskFullError, match="disk full"):
            journal.add(b"x" * 100_000, 2, 1)
        with pytest.raises(DiskFullError):
            guard.reserve(100)
        assert guard.disk_full and guard.disk_full_refusals == 1
    assert len(journal) == 1  # the refused entry is in neither the file nor the in-memory log
    journal.add(b"after", 2, 1)
    assert not guard.disk_full
    journal._destroy()
    assert [e[0] for e in FileJournal(str(tmp_path / "journal"))] == [b"before", b"after"]


def test_an_unknown_sync_mode_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="always, interval.*'sometimes'"):
        JournalGuard(None, "sometimes")


def test_a_failed_snapshot_leaves_no_temporary_file(tmp_path: Any) -> None:
    """A half-written snapshot file would keep a full disk full."""
    tmp = tmp_path / "snapshot.tmp"
    tmp.write_bytes(b"partial")

    def failing_snapshot() -> dict[str, Any]:
        (tmp_path / "snapshot.writing").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = SnapshotWriter(str(tmp_path / "snapshot"), lambda: failing_snapshot, lambda data: None)
    writer.serialize(str(tmp), ((b"", 2, 1), (b"", 1, 1), []))
    writer.wait(5)
    assert writer.check() == SERIALIZER_STATE.FAILED
    assert sorted(os.listdir(tmp_path)) == []
    # The retry waits: a second attempt right away is refused without re-encoding the state.
    with pytest.raises(OSError):
        writer.serialize(str(tmp), ((b"", 2, 1), (b"", 1, 1), []))
    assert writer.check() == SERIALIZER_STATE.FAILED


class _CountingLibc:
    """Real fallocate, counted: how many syscalls a run of appends costs."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def fallocate(self, *args: Any) -> int:
        self.calls += 1
        return int(self.real.fallocate(*args))


def test_appends_inside_the_reserved_room_cost_no_syscall_and_a_new_file_is_allocated_afresh(
        tmp_path: Any, monkeypatch: Any) -> None:
    """Every proposal used to fallocate 1 MB ahead and every append its own record: two syscalls
    per write on the write path, contending with the journal's msync for the inode."""
    from meshfed.server.raft.storage import rewrite_journal

    counting = _CountingLibc(durability._libc)
    monkeypatch.setattr(durability, "_libc", counting)
    path = str(tmp_path / "journal")
    journal = FileJournal(path)
    guard = JournalGuard(journal)
    for index in range(1, 1001):
        guard.reserve(200)
        journal.add(b"x" * 200, index, 1)
    assert counting.calls <= 2  # 1,000 records of ~224 bytes fit in the first megabyte reserved
    assert not guard.disk_full
    entries = [journal[i] for i in range(len(journal))]
    rewrite_journal(journal, path, entries[500:])  # compaction: a new file under the same journal
    before = counting.calls
    journal.add(b"y" * 200, 1001, 1)
    assert counting.calls > before  # nothing is known of the new file's blocks
    journal._destroy()
    assert len(FileJournal(path)) == 501


def test_a_full_disk_is_still_seen_once_the_reserved_room_is_used_up(tmp_path: Any, monkeypatch: Any) -> None:
    journal = FileJournal(str(tmp_path / "journal"))
    guard = JournalGuard(journal)
    guard.reserve(100)
    journal.add(b"inside", 1, 1)  # within the room reserved above: no syscall needed
    with monkeypatch.context() as patch:
        patch.setattr(durability, "_libc", _FullDisk())
        journal.add(b"still inside", 2, 1)
        with pytest.raises(DiskFullError):
            journal.add(b"x" * (2 * durability.RESERVE_AHEAD_BYTES), 3, 1)
        assert guard.disk_full
    journal._destroy()

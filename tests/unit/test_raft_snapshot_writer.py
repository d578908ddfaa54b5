"""The snapshot writer converts and writes off the Raft tick thread (issue #13, goal 3), and never
installs a write that a newer snapshot overtook (server/raft/storage.py, SnapshotWriter)."""

from __future__ import annotations

import os
import random
import threading
from typing import Any

from pysyncobj.config import SERIALIZER_STATE

from meshfed.server.raft.storage import (
    SNAPSHOT_JITTER,
    SnapshotWriter,
    jittered_schedule,
    read_snapshot,
    write_snapshot,
)

LAST, PREV = (b"c2", 2, 1), (b"c1", 1, 1)


def gated(data: dict[str, Any], gate: threading.Event) -> Any:
    def render() -> dict[str, Any]:
        assert gate.wait(5)
        return data

    return lambda: render


def test_serialize_returns_at_once_and_check_installs_when_the_write_is_done(tmp_path: Any) -> None:
    gate = threading.Event()
    written: list[tuple[int, int]] = []
    dump = str(tmp_path / "snapshot")
    writer = SnapshotWriter(dump, gated({"state": "at 2"}, gate), lambda data: None,
                            on_written=lambda index, size: written.append((index, size)))
    writer.serialize(dump + ".tmp", (LAST, PREV, []))
    assert writer.check() == SERIALIZER_STATE.SERIALIZING  # the tick thread is free meanwhile
    assert not os.path.exists(dump) and not os.path.exists(dump + ".tmp")
    gate.set()
    writer.wait(5)
    assert writer.check() == SERIALIZER_STATE.SUCCESS
    fsm, last, prev, _ = read_snapshot(dump)
    assert (fsm, last, prev) == ({"state": "at 2"}, LAST, PREV)
    assert written == [(2, os.path.getsize(dump))]
    assert writer.check() == SERIALIZER_STATE.NOT_SERIALIZING
    assert sorted(os.listdir(tmp_path)) == ["snapshot"]


def test_a_write_overtaken_by_an_installed_snapshot_is_dropped(tmp_path: Any) -> None:
    """A follower that installs the leader's snapshot (index 9) while writing its own (index 2)
    must keep the leader's: installing the older one would leave a dump behind the journal."""
    gate = threading.Event()
    dump = str(tmp_path / "snapshot")
    restored: list[dict[str, Any]] = []
    writer = SnapshotWriter(dump, gated({"state": "at 2"}, gate), restored.append)
    writer.serialize(dump + ".tmp", (LAST, PREV, []))
    write_snapshot(dump, {"state": "at 9"}, (b"c9", 9, 2), (b"c8", 8, 2), [])
    writer.deserialize(dump)  # what the library does with a snapshot from the leader
    gate.set()
    writer.wait(5)
    assert writer.check() == SERIALIZER_STATE.FAILED
    assert read_snapshot(dump)[0] == {"state": "at 9"}
    assert restored == [{"state": "at 9"}]
    assert sorted(os.listdir(tmp_path)) == ["snapshot"]


def test_a_stale_tmp_file_is_never_left_for_the_library_to_install(tmp_path: Any) -> None:
    dump = str(tmp_path / "snapshot")
    (tmp_path / "snapshot.tmp").write_bytes(b"old garbage")
    (tmp_path / "snapshot.writing").write_bytes(b"cut short by a crash")
    writer = SnapshotWriter(dump, lambda: lambda: {"s": 1}, lambda data: None)
    assert not os.path.exists(dump + ".writing")
    writer.serialize(dump + ".tmp", (LAST, PREV, []))
    assert not os.path.exists(dump + ".tmp")
    writer.wait(5)
    assert writer.check() == SERIALIZER_STATE.SUCCESS


def test_snapshot_schedules_spread_servers_apart_but_never_come_sooner_than_configured() -> None:
    draws = [jittered_schedule(8192, 300.0, random.Random(seed)) for seed in range(50)]
    assert all(8192 <= e < 8192 * (1 + SNAPSHOT_JITTER) and 300 <= s < 300 * (1 + SNAPSHOT_JITTER) for e, s in draws)
    assert len({e for e, _ in draws}) > 40  # three servers started together rarely draw alike

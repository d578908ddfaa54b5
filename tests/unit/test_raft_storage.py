"""The Raft adapter's durability fixes, pinned against PySyncObj 0.3.17 (reference/pysyncobj.md §2.4).

Each crash window is reproduced deterministically by building the exact files a kill -9 would
leave behind, then starting a real single-node PySyncObj (in this process, on loopback) on them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pysyncobj.journal import FileJournal

from meshfed.fsm import CatalogRegister, StateMachine
from meshfed.fsm.records import Node
from meshfed.server.raft import RaftNode, RaftTimings
from meshfed.server.raft.storage import read_snapshot, reconcile_journal, rewrite_journal, write_snapshot
from tests.ports import free_port

KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU="


def entry(index: int, term: int = 1) -> tuple[bytes, int, int]:
    return (b"cmd%d" % index, index, term)


# ---- the pure decision ------------------------------------------------------------------------


def test_reconcile_keeps_entries_after_the_snapshot() -> None:
    journal = [entry(i) for i in range(1, 11)]
    wanted = reconcile_journal(journal, last=entry(6), prev=entry(5), clear=False)
    assert [e[1] for e in wanted] == [5, 6, 7, 8, 9, 10]


def test_reconcile_with_a_journal_that_already_starts_at_the_snapshot() -> None:
    journal = [entry(5), entry(6), entry(7)]
    assert reconcile_journal(journal, entry(6), entry(5), clear=False) == journal


def test_reconcile_drops_a_tail_from_another_history() -> None:
    journal = [entry(5), entry(6, term=2), entry(7, term=2)]
    assert reconcile_journal(journal, entry(6, term=1), entry(5), clear=False) == [entry(5), entry(6, term=1)]


def test_reconcile_stops_at_a_gap_and_obeys_clear() -> None:
    journal = [entry(i) for i in (1, 2, 3, 7, 8, 10)]
    assert [e[1] for e in reconcile_journal(journal, entry(6), entry(5), clear=False)] == [5, 6, 7, 8]
    assert [e[1] for e in reconcile_journal(journal, entry(6), entry(5), clear=True)] == [5, 6]


@given(st.integers(1, 50), st.integers(0, 60), st.integers(2, 60))
def test_reconcile_result_is_contiguous_and_starts_at_the_snapshot(first: int, length: int, snap: int) -> None:
    journal = [entry(i) for i in range(first, first + length)]
    wanted = reconcile_journal(journal, entry(snap), entry(snap - 1), clear=False)
    indexes = [e[1] for e in wanted]
    assert indexes == list(range(snap - 1, snap - 1 + len(indexes)))
    assert set(indexes[2:]) <= {e[1] for e in journal}
    assert len(indexes) - 2 == len([i for i in range(first, first + length) if i > snap]) or first > snap + 1


# ---- file formats ---------------------------------------------------------------------------------


def test_snapshot_file_round_trip_and_corruption_is_detected(tmp_path: Any) -> None:
    path = str(tmp_path / "snap")
    write_snapshot(path, {"x": 1}, entry(6), entry(5), ["127.0.0.1:1"])
    assert read_snapshot(path) == ({"x": 1}, entry(6), entry(5), ["127.0.0.1:1"])
    blob = bytearray(open(path, "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    open(path, "wb").write(bytes(blob))
    with pytest.raises(ValueError):
        read_snapshot(path)


def test_rewrite_journal_is_atomic_when_interrupted(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Window 3: the library's compaction rewrote the journal in place, so a kill in the middle
    left a journal without its tail. Ours writes a new file and renames it: an interruption
    leaves the old journal complete."""
    path = str(tmp_path / "journal")
    journal = FileJournal(path)
    for i in range(1, 21):
        journal.add(*entry(i))
    calls = itertools.count()
    original_add = FileJournal.add

    def crashing_add(self: FileJournal, *args: Any) -> None:
        if next(calls) == 3:
            raise OSError("simulated crash during rewrite")
        original_add(self, *args)

    monkeypatch.setattr(FileJournal, "add", crashing_add)
    with pytest.raises(OSError):
        rewrite_journal(journal, path, [entry(i) for i in range(10, 21)])
    monkeypatch.undo()
    reopened = FileJournal(path)
    assert [reopened[i][1] for i in range(len(reopened))] == list(range(1, 21))


# ---- real PySyncObj on the crash states ---------------------------------------------------------


async def _with_node(data_dir: str, port: int, action: Any, snapshot_threshold: int = 100_000) -> Any:
    machine = StateMachine()
    node = RaftNode(
        self_address=f"127.0.0.1:{port}", peers=[], machine=machine, cluster_key=KEY, data_dir=data_dir,
        timings=RaftTimings(), snapshot_threshold=snapshot_threshold,
    )
    node.start(asyncio.get_running_loop())
    try:
        for _ in range(200):
            if node.is_leader():
                break
            await asyncio.sleep(0.02)
        assert node.is_leader()
        await node.barrier()
        return await action(node, machine)
    finally:
        await asyncio.get_running_loop().run_in_executor(None, node.stop)


async def _write(node: RaftNode, names: list[str]) -> None:
    for name in names:
        (result,) = await node.apply([(name, CatalogRegister(node=Node(node=name, address="127.0.0.1")))])
        assert result.ok


async def _names(node: RaftNode, machine: StateMachine) -> set[str]:
    return {n.node for n in machine.state.catalog_nodes()[1]}


def _journal_entries(path: str) -> list[tuple[bytes, int, int]]:
    journal = FileJournal(path)
    try:
        return [journal[i] for i in range(len(journal))]
    finally:
        journal._destroy()


def test_restart_keeps_journal_entries_written_after_the_snapshot(tmp_path: Any) -> None:
    """Window 2: killed after the snapshot was installed but before the journal was truncated.
    The library cleared the whole journal here (its journal does not start at the snapshot),
    losing every acknowledged write after the snapshot index."""
    data_dir = str(tmp_path / "data")
    raft_dir = os.path.join(data_dir, "raft")
    port = free_port()
    first = [f"a{i}" for i in range(30)]
    second = [f"b{i}" for i in range(30)]

    async def phase1(node: RaftNode, machine: StateMachine) -> None:
        await _write(node, first)

    asyncio.run(_with_node(data_dir, port, phase1))
    untruncated = _journal_entries(os.path.join(raft_dir, "journal"))

    async def phase2(node: RaftNode, machine: StateMachine) -> int:
        node.force_snapshot()
        for _ in range(200):
            if node.snapshot_index:
                break
            await asyncio.sleep(0.02)
        assert node.snapshot_index > 0
        await _write(node, second)
        return node.snapshot_index

    snapshot_index = asyncio.run(_with_node(data_dir, port, phase2))
    journal_path = os.path.join(raft_dir, "journal")
    after = _journal_entries(journal_path)
    assert after[0][1] == snapshot_index - 1  # compaction did happen
    # Rebuild the crash state: the snapshot is installed, the journal still holds everything.
    crash_journal = untruncated + [e for e in after if e[1] > untruncated[-1][1]]
    os.remove(journal_path)
    journal = FileJournal(journal_path)
    for e in crash_journal:
        journal.add(*e)
    journal._destroy()
    assert _journal_entries(journal_path)[0][1] == 1 < snapshot_index

    names = asyncio.run(_with_node(data_dir, port, _names))
    assert set(first) | set(second) <= names


def test_unreadable_snapshot_stops_the_node_instead_of_serving_partial_state(tmp_path: Any) -> None:
    data_dir = str(tmp_path / "data")
    port = free_port()

    async def write_and_snapshot(node: RaftNode, machine: StateMachine) -> None:
        await _write(node, ["x1", "x2"])
        node.force_snapshot()
        for _ in range(200):
            if node.snapshot_index:
                return
            await asyncio.sleep(0.02)

    asyncio.run(_with_node(data_dir, port, write_and_snapshot))
    snapshot = os.path.join(data_dir, "raft", "snapshot")
    blob = bytearray(open(snapshot, "rb").read())
    blob[20] ^= 0xFF
    open(snapshot, "wb").write(bytes(blob))

    async def start_on_corrupt() -> str:
        fatal: list[str] = []
        node = RaftNode(self_address=f"127.0.0.1:{port}", peers=[], machine=StateMachine(), cluster_key=KEY,
                        data_dir=data_dir, on_fatal=fatal.append)
        node.start(asyncio.get_running_loop())
        for _ in range(100):
            if fatal:
                break
            await asyncio.sleep(0.02)
        await asyncio.get_running_loop().run_in_executor(None, node.stop)
        return fatal[0] if fatal else ""

    reason = asyncio.run(start_on_corrupt())
    assert "snapshot" in reason


def test_index_of_every_record_is_the_raft_index_and_survives_restart(tmp_path: Any) -> None:
    data_dir = str(tmp_path / "data")
    port = free_port()

    async def write(node: RaftNode, machine: StateMachine) -> dict[str, int]:
        await _write(node, [f"n{i}" for i in range(10)])
        return {n.node: n.modify_index for n in machine.state.catalog_nodes()[1]}

    before = asyncio.run(_with_node(data_dir, port, write, snapshot_threshold=5))
    assert len(set(before.values())) == 10 and min(before.values()) >= 1

    async def read(node: RaftNode, machine: StateMachine) -> dict[str, int]:
        return {n.node: n.modify_index for n in machine.state.catalog_nodes()[1]}

    assert asyncio.run(_with_node(data_dir, port, read)) == before
    shutil.rmtree(data_dir)

"""Backups: the file format (fsm/snapshot_format.py) and restore through the log (fsm/restore.py,
StateMachine's restore command): what is refused, what a restore leaves, and that replicas fed
the same entries (with a Raft snapshot cut anywhere in the upload) end identical."""

from __future__ import annotations

import hashlib
import os
import struct

import msgpack
import pytest

from meshfed.fsm import (
    CatalogRegister,
    ConfigEntrySet,
    Noop,
    StateMachine,
    encode_batch,
)
from meshfed.fsm.records import ConfigEntry, Node, NodeService
from meshfed.fsm.restore import CHUNK_BYTES, RestoreStaging, SnapshotRestoreChunk, chunk_commands
from meshfed.fsm.snapshot import encode_frame
from meshfed.fsm.snapshot_format import (
    BACKUP_VERSION,
    STAGING_KEY,
    BackupError,
    decode_backup,
    encode_backup,
    state_index,
    table_counts,
)
from meshfed.server.cli.snapshot import inspect_lines


class Log:
    """Feeds entries to machines as consecutive Raft indexes, as every replica sees them."""

    def __init__(self, *machines: StateMachine, start: int = 1) -> None:
        self.machines = list(machines)
        self.index = start - 1

    def append(self, *commands: object, rid: str = "") -> list:
        self.index += 1
        payload = encode_batch([(rid, c) for c in commands])
        results = [m.apply(self.index, payload) for m in self.machines]
        return results[0]


def register(node: str, service: str = "web", port: int = 80) -> CatalogRegister:
    return CatalogRegister(node=Node(node=node, address="10.0.0.1"),
                           service=NodeService(id=service, service=service, port=port))


def busy_machine(writes: int = 40, nodes: int = 7) -> StateMachine:
    machine = StateMachine()
    log = Log(machine)
    for i in range(writes):
        log.append(register(f"n{i % nodes}", port=1000 + i))
    log.append(ConfigEntrySet(entry=ConfigEntry(kind="proxy-defaults", name="global", body={"Config": {}})))
    return machine


def backup_of(machine: StateMachine, **meta: object) -> bytes:
    return encode_backup(machine.snapshot_data(), {"datacenter": "dc1", "term": 3, **meta})


def restore(log: Log, blob: bytes, restore_id: str = "r1") -> list:
    chunks, commit = chunk_commands(restore_id, blob)
    for chunk in chunks:
        (result,) = log.append(chunk)
        assert result.ok, result.error
    return log.append(commit)


# ---- the file format ----------------------------------------------------------------------------


def test_round_trip_keeps_meta_machine_and_names_the_file_by_its_digest() -> None:
    machine = busy_machine()
    blob = backup_of(machine, index=5)
    backup = decode_backup(blob)
    assert backup.meta["datacenter"] == "dc1" and backup.meta["term"] == 3
    assert backup.machine == machine.snapshot_data()
    assert backup.sha256 == hashlib.sha256(blob[:-32]).hexdigest() and backup.size == len(blob)
    assert state_index(backup.machine) == machine.last_index
    assert table_counts(backup.machine)["nodes"] == 7 and table_counts(backup.machine)["config_entries"] == 1


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:10], "truncated"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"x", "unexpected bytes after the checksum"),
    (lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:], "checksum mismatch"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum mismatch"),
    (lambda b: b"", "empty"),
    (lambda b: b"\x1f\x8b\x08\x00" + b[4:], "gzip archive"),
    (lambda b: b"MFSN" + b[4:], "Raft snapshot file"),
    (lambda b: b"XXXX" + b[4:], "not a meshfed backup"),
])
def test_damaged_files_are_refused_naming_the_problem(damage, message) -> None:
    with pytest.raises(BackupError, match=message):
        decode_backup(damage(backup_of(busy_machine(3))))


def _reframed(payload: dict, version: int = BACKUP_VERSION) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    framed = struct.pack(">4sHQ", b"MFBK", version, len(body)) + body
    return framed + hashlib.sha256(framed).digest()


def test_incompatible_versions_and_unknown_tables_are_refused() -> None:
    machine = busy_machine(3).snapshot_data()
    with pytest.raises(BackupError, match="incompatible: backup format version 2"):
        decode_backup(_reframed({"meta": {}, "machine": machine}, version=2))
    future = {**machine, "tables": {**machine["tables"], "kv": []}}
    with pytest.raises(BackupError, match="incompatible: .*table\\(s\\) kv"):
        decode_backup(_reframed({"meta": {"meshfed_version": "9.0"}, "machine": future}))
    with pytest.raises(BackupError, match="'meta' and 'machine'"):
        decode_backup(_reframed({"meta": {}}))


def test_a_backup_never_carries_a_half_staged_restore() -> None:
    machine = busy_machine(3)
    log = Log(machine, start=machine.last_index + 1)
    chunks, _ = chunk_commands("r", os.urandom(CHUNK_BYTES * 2))
    log.append(chunks[0])
    assert STAGING_KEY in machine.snapshot_data()
    assert STAGING_KEY not in decode_backup(backup_of(machine)).machine


def test_inspect_prints_index_term_size_checksum_and_counts() -> None:
    blob = backup_of(busy_machine(), created=0.0)
    text = "\n".join(inspect_lines(blob))
    backup = decode_backup(blob)
    assert f"Index        {state_index(backup.machine)}" in text
    assert "Term         3" in text and f"Size         {len(blob)}" in text
    assert f"sha256:{backup.sha256}" in text and "1970-01-01T00:00:00Z" in text
    assert " nodes" in text and " acl_tokens" in text


# ---- restore through the log --------------------------------------------------------------------


def test_restore_into_a_fresh_machine_keeps_records_and_their_indexes() -> None:
    source = busy_machine(60)
    blob = backup_of(source)
    target = StateMachine()
    log = Log(target)
    log.append(register("other"))  # something the restore must remove
    (result,) = restore(log, blob)
    assert result.ok, result.error
    restored_at = result.value
    assert restored_at == source.last_index + 1  # above the backup, though the Raft index is tiny
    assert log.index < source.last_index
    exported, original = target.state.export(), source.state.export()
    assert exported["table_index"] == dict.fromkeys(original["table_index"], restored_at)
    assert {k: v for k, v in exported.items() if k != "table_index"} == \
        {k: v for k, v in original.items() if k != "table_index"}
    # Writes continue above every index served, never at the (small) Raft index.
    (write,) = log.append(register("after"), rid="w1")
    assert write.ok
    _, node, _ = target.state.catalog_node("after")
    assert node.modify_index == restored_at + 1
    assert target.state.index("nodes") == restored_at + 1


def test_restore_over_a_busier_state_moves_no_index_backwards() -> None:
    target = busy_machine(80)
    before = target.state.index()
    log = Log(target, start=target.last_index + 1)
    (result,) = restore(log, backup_of(busy_machine(5)))
    assert result.ok and result.value > before
    assert target.state.index("nodes") == result.value


def test_subscribers_hear_every_table_at_the_restore_index() -> None:
    target = StateMachine()
    heard: list = []
    target.subscribe(lambda tables, index: heard.append((tables, index)))
    log = Log(target)
    (result,) = restore(log, backup_of(busy_machine(10)))
    tables, index = heard[-1]
    assert index == result.value and {"nodes", "services", "acl_tokens", "config_entries"} <= tables


@pytest.mark.parametrize("corrupt", ["digest", "missing chunk", "bad records"])
def test_a_bad_restore_commit_changes_nothing(corrupt: str) -> None:
    target = busy_machine(10)
    before = target.snapshot_data()
    log = Log(target, start=target.last_index + 1)
    blob = backup_of(busy_machine(30))
    if corrupt == "bad records":
        data = busy_machine(3).snapshot_data()
        data["tables"]["nodes"] = [{"node": 5}]
        blob = encode_backup(data, {})
    chunks, commit = chunk_commands("r", blob)
    if corrupt == "digest":
        commit = type(commit)(commit.restore_id, commit.total, "0" * 64)
    for chunk in chunks[:-1] if corrupt == "missing chunk" else chunks:
        log.append(chunk)
    (result,) = log.append(commit)
    assert not result.ok and result.code == "invalid" and "snapshot restore refused" in result.error
    after = target.snapshot_data()
    assert after["tables"] == before["tables"] and after["index_offset"] == before["index_offset"]
    assert STAGING_KEY not in after  # the failed upload is dropped, not left to mix with the next


def test_an_abort_drops_only_its_own_upload() -> None:
    target = StateMachine()
    log = Log(target)
    chunks, commit = chunk_commands("mine", os.urandom(CHUNK_BYTES + 1))
    log.append(chunks[0])
    (other,) = log.append(type(commit)("someone-else", commit.total, "", abort=True))
    assert other.ok and other.value is False and STAGING_KEY in target.snapshot_data()
    (mine,) = log.append(type(commit)("mine", commit.total, "", abort=True))
    assert mine.ok and mine.value is True and STAGING_KEY not in target.snapshot_data()


def test_staging_refuses_chunks_of_a_restore_that_is_not_staged() -> None:
    staging = RestoreStaging()
    with pytest.raises(Exception, match="not being staged"):
        staging.stage(SnapshotRestoreChunk("late", 3, 5, b"x"))
    staging.stage(SnapshotRestoreChunk("a", 0, 2, b"x"))
    staging.stage(SnapshotRestoreChunk("b", 0, 2, b"y"))  # a new upload replaces an abandoned one
    with pytest.raises(Exception, match="not being staged"):
        staging.stage(SnapshotRestoreChunk("a", 1, 2, b"x"))
    with pytest.raises(Exception, match="chunk 0 said 2"):
        staging.stage(SnapshotRestoreChunk("b", 1, 3, b"x"))


def test_replicas_stay_identical_with_a_raft_snapshot_cut_inside_the_upload() -> None:
    """A replica restarted from a Raft snapshot taken between two chunks must commit the same
    restore as one that saw every chunk: the staging travels in the Raft snapshot."""
    blob = backup_of(busy_machine(600, nodes=600))
    chunks, commit = chunk_commands("r", blob)
    assert len(chunks) >= 3
    steady, other = StateMachine(), StateMachine()
    log = Log(steady, other)
    log.append(register("x"))
    log.append(chunks[0])
    # `other` restarts from a Raft snapshot here (the frame the Raft storage writes).
    from meshfed.fsm.snapshot import decode_frame
    restarted = StateMachine()
    restarted.restore_data(decode_frame(encode_frame(other.snapshot_data())))
    log.machines = [steady, restarted]
    for chunk in chunks[1:]:
        log.append(chunk)
    results = log.append(commit)
    assert results[0].ok
    assert steady.snapshot_data() == restarted.snapshot_data()
    # and replaying the commit entry (journal replay after a restore) changes nothing
    again = restarted.apply(log.index, encode_batch([("", commit)]))
    assert again[0].ok and steady.snapshot_data() == restarted.snapshot_data()


def test_commands_after_the_restore_in_the_same_entry_apply_to_the_restored_state() -> None:
    source = busy_machine(5)
    chunks, commit = chunk_commands("r", backup_of(source))
    target = StateMachine()
    log = Log(target)
    for chunk in chunks:
        log.append(chunk)
    results = log.append(register("before"), commit, register("after"), Noop())
    assert all(r.ok for r in results)
    assert target.state.catalog_node("before")[1] is None
    _, after, _ = target.state.catalog_node("after")
    assert after.modify_index == results[1].value == results[3].value


def test_raft_snapshots_written_before_restores_existed_still_load() -> None:
    old = busy_machine(5).snapshot_data()
    del old["index_offset"]
    machine = StateMachine()
    machine.restore_data(old)
    assert machine.index_offset == 0 and machine.last_index == old["last_index"]

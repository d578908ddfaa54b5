"""The snapshot endpoint against the Raft twin (a real state machine behind a synchronous log):
save is a point in time with its index, restore is checked before anything is proposed, goes
through the log as chunks plus a commit, and retries lost proposals under the same request ids."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from meshfed.fsm import CatalogRegister
from meshfed.fsm.records import Node
from meshfed.fsm.restore import SnapshotRestoreChunk, SnapshotRestoreCommit
from meshfed.fsm.snapshot_format import STAGING_KEY, decode_backup, state_index
from meshfed.rpc.errors import RPCError
from meshfed.server.endpoints.snapshot import CHUNK_WINDOW, SnapshotEndpoint
from tests.twins.raft import RaftTwin


async def _no_sleep(_: float) -> None:
    return None


def endpoint(twin: RaftTwin) -> SnapshotEndpoint:
    return SnapshotEndpoint(datacenter="dc1", machine=twin.machine, raft=twin, term=lambda: 7,
                            clock=lambda: 1_700_000_000.0, sleep=_no_sleep)


def populated(nodes: int) -> RaftTwin:
    twin = RaftTwin()
    for i in range(nodes):
        meta = {f"k{j}": "v" * 200 for j in range(20)}
        twin.apply_now(CatalogRegister(node=Node(node=f"n{i}", address="10.0.0.1", meta=meta)))
    return twin


def test_save_returns_the_state_index_and_a_verified_file() -> None:
    twin = populated(5)
    index, blob = asyncio.run(endpoint(twin).save(stale=False))
    backup = decode_backup(blob)
    assert index == state_index(backup.machine) == twin.state.index()
    assert backup.meta == {"datacenter": "dc1", "index": index, "term": 7, "created": 1_700_000_000.0,
                           "meshfed_version": backup.meta["meshfed_version"]}


def test_restore_goes_through_the_log_as_chunks_and_one_commit() -> None:
    source = populated(60)
    _, blob = asyncio.run(endpoint(source).save(stale=True))
    target = RaftTwin()
    target.apply_now(CatalogRegister(node=Node(node="gone", address="10.0.0.2")))
    restored_at = asyncio.run(endpoint(target).restore(blob))
    chunks = [c for c in target.commands if isinstance(c, SnapshotRestoreChunk)]
    commits = [c for c in target.commands if isinstance(c, SnapshotRestoreCommit)]
    assert len(chunks) > 3 and len(commits) == 1 and target.commands[-1] is commits[0]
    assert restored_at > source.state.index()
    assert target.state.catalog_node("gone")[1] is None
    assert target.state.catalog_node("n59")[1] == source.state.catalog_node("n59")[1]


def test_lost_proposals_are_retried_and_the_restore_still_lands_once() -> None:
    _, blob = asyncio.run(endpoint(populated(10)).save(stale=True))
    target = RaftTwin()
    target.failures = 2
    asyncio.run(endpoint(target).restore(blob))
    assert target.state.catalog_node("n9")[1] is not None


@pytest.mark.parametrize("blob, problem", [
    (b"", "empty"),
    (b"MFBK\x00\x01" + b"\x00" * 40, "checksum mismatch"),
    (b"PK\x03\x04", "not a meshfed backup"),
])
def test_a_bad_file_is_invalid_argument_and_nothing_is_proposed(blob: bytes, problem: str) -> None:
    twin = populated(2)
    proposed = len(twin.commands)
    with pytest.raises(RPCError) as caught:
        asyncio.run(endpoint(twin).restore(blob))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and problem in caught.value.message
    assert len(twin.commands) == proposed


def test_without_raft_the_restore_fails_unavailable_and_changes_nothing() -> None:
    _, blob = asyncio.run(endpoint(populated(3)).save(stale=True))
    target = populated(1)
    before = target.state.export()
    target.set_leader(False)
    with pytest.raises(RPCError) as caught:
        asyncio.run(endpoint(target).restore(blob))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert target.state.export() == before


def test_an_upload_that_fails_half_way_drops_its_staged_chunks() -> None:
    _, blob = asyncio.run(endpoint(populated(40)).save(stale=True))
    target = populated(1)
    before = target.state.export()
    target.before_apply = lambda: setattr(target, "failures", 4 * CHUNK_WINDOW)  # after chunk 0 lands
    with pytest.raises(RPCError) as caught:
        asyncio.run(endpoint(target).restore(blob))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert any(isinstance(c, SnapshotRestoreChunk) for c in target.commands)
    assert target.commands[-1] == SnapshotRestoreCommit(target.commands[-1].restore_id, target.commands[-1].total,
                                                        "", abort=True)
    assert STAGING_KEY not in target.machine.snapshot_data()
    assert target.state.export() == before

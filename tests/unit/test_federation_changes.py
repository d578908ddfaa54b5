"""What changed after an index (fsm/federation_changes.py) and the replicator's delta rounds.

The rule under test: a delta answer is either exactly the changes after the caller's index, or
None ("full resync"); never a partial answer (behind the horizon, after a restore, ahead of the
store)."""

from __future__ import annotations

import asyncio

from meshfed.fsm.federation_changes import FederationChanges
from meshfed.fsm.records import FederationState
from meshfed.fsm.state import StateStore
from meshfed.replication.federation_states import (
    FederationStateDelegate,
    RemoteChanges,
    diff_federation_changes,
)
from meshfed.replication.replicator import Replicator


def test_since_returns_only_changes_after_the_index_newest_first() -> None:
    log = FederationChanges()
    log.upserted("dc1", 1)
    log.upserted("dc2", 2)
    log.upserted("dc1", 3)  # moves dc1 after dc2
    log.deleted("dc2", 4)
    assert log.since(1, 4) is not None and log.since(1, 4).upserted == ("dc1",)
    assert log.since(1, 4).deleted == ("dc2",)
    assert log.since(3, 4).upserted == () and log.since(3, 4).deleted == ("dc2",)
    assert log.since(4, 4).upserted == () and log.since(4, 4).deleted == ()
    log.upserted("dc2", 5)  # re-created: no longer a tombstone
    assert log.since(3, 5).upserted == ("dc2",) and log.since(3, 5).deleted == ()


def test_index_zero_behind_the_horizon_or_ahead_of_the_store_means_full_resync() -> None:
    log = FederationChanges(horizon=10)
    log.upserted("dc1", 11)
    assert log.since(0, 11) is None
    assert log.since(9, 11) is None  # changes at or before 10 are unknown
    assert log.since(12, 11) is None  # the store went backwards (restored or rebuilt)
    assert log.since(10, 11).upserted == ("dc1",)


def test_trimming_tombstones_raises_the_horizon_past_what_it_forgot() -> None:
    log = FederationChanges(max_tombstones=2)
    log.upserted("live", 1)
    for index, dc in enumerate(("a", "b", "c"), start=2):
        log.deleted(dc, index)
    # Keeping two tombstones dropped "live"@1 and "a"@2: a caller at 1 would miss "a".
    assert log.horizon == 2
    assert log.since(1, 4) is None
    assert log.since(2, 4).deleted == ("c", "b")


def upsert(store: StateStore, dc: str, index: int) -> None:
    with store.writer() as writer:
        writer.put_federation_state(FederationState(dc, modify_index=index), index)


def test_the_store_answers_deltas_and_a_restore_forces_a_full_resync() -> None:
    store = StateStore()
    for index, dc in enumerate(("dc1", "dc2", "dc3"), start=1):
        upsert(store, dc, index)
    with store.writer() as writer:
        writer.delete_federation_state("DC2", 4)
    table_index, delta = store.federation_state_changes(2)
    assert table_index == 4 and delta is not None
    assert [s.datacenter for s in delta.states] == ["dc3"] and delta.deleted == ("dc2",)
    # The log is not in the snapshot: after a restore, nothing before the restored index is answerable.
    restored = StateStore()
    restored.load(store.export())
    assert restored.federation_state_changes(2) == (4, None)
    assert restored.federation_state_changes(4)[1] is not None
    upsert(restored, "dc9", 5)
    assert [s.datacenter for s in restored.federation_state_changes(4)[1].states] == ["dc9"]
    # A backup restore inside a log entry lifts every index: callers from before resync in full.
    with restored.writer() as writer:
        writer.replace_all(store.export(), 100)
    assert restored.federation_state_changes(5) == (100, None)
    assert restored.federation_state_changes(100)[1] is not None


def test_delta_diff_reads_only_named_rows_and_skips_what_is_already_applied() -> None:
    local = {"dc1": FederationState("dc1", primary_modify_index=5), "dc2": FederationState("dc2", primary_modify_index=6)}
    read: list[str] = []

    def lookup(dc: str) -> FederationState | None:
        read.append(dc)
        return local.get(dc)

    changes = RemoteChanges((FederationState("dc1", modify_index=5), FederationState("dc3", modify_index=8)), ("dc2", "gone"))
    diff = diff_federation_changes(lookup, changes)
    assert [s.datacenter for s in diff.deletions] == ["dc2"]
    assert [(s.datacenter, s.primary_modify_index) for s in diff.updates] == [("dc3", 8)]
    assert sorted(read) == ["dc1", "dc2", "dc3", "gone"]


class PrimaryStore:
    """The primary's List and ListSince over a real store, recording which was called."""

    def __init__(self) -> None:
        self.store = StateStore()
        self.calls: list[str] = []

    async def fetch(self, min_index: int) -> tuple[int, list[FederationState]]:
        self.calls.append(f"list {min_index}")
        return self.store.federation_state_list()

    async def fetch_changes(self, since: int) -> tuple[int, RemoteChanges | None]:
        self.calls.append(f"since {since}")
        index, delta = self.store.federation_state_changes(since)
        return index, None if delta is None else RemoteChanges(delta.states, delta.deleted)


def test_replicator_uses_deltas_after_the_first_sync_and_resyncs_after_a_restore() -> None:
    async def scenario() -> None:
        primary = PrimaryStore()
        for index, dc in enumerate(("dc1", "dc2", "dc3"), start=1):
            upsert(primary.store, dc, index)
        rows: dict[str, FederationState] = {}
        writes: list[str] = []

        async def put(state: FederationState) -> None:
            rows[state.datacenter] = state
            writes.append(f"upsert {state.datacenter}")

        async def delete(dc: str) -> None:
            rows.pop(dc.lower(), None)
            writes.append(f"delete {dc}")

        delegate = FederationStateDelegate(primary.fetch, lambda: list(rows.values()), put, delete,
                                           fetch_changes=primary.fetch_changes, lookup=lambda dc: rows.get(dc.lower()))
        replicator: Replicator[FederationState] = Replicator(delegate, rate=1000, burst=1000, apply_limit=0, apply_batch=2)
        await replicator.round()
        assert primary.calls == ["list 0"] and sorted(rows) == ["dc1", "dc2", "dc3"]
        upsert(primary.store, "dc2", 4)
        with primary.store.writer() as writer:
            writer.delete_federation_state("dc3", 5)
        writes.clear()
        await replicator.round()
        assert primary.calls[-1] == "since 3" and writes == ["delete dc3", "upsert dc2"]
        assert rows["dc2"].primary_modify_index == 4 and replicator.status.last_remote_index == 5
        # The primary is restored from its own snapshot: its log restarts at index 5, and our index
        # 5 is still answerable; a write after it comes as a delta.
        restored = StateStore()
        restored.load(primary.store.export())
        primary.store = restored
        upsert(primary.store, "dc4", 6)
        await replicator.round()
        assert primary.calls[-1] == "since 5" and "dc4" in rows
        # The primary is rebuilt from an older backup: our index is ahead of it -> full List.
        older = StateStore()
        upsert(older, "dc1", 1)
        primary.store = older
        await replicator.round()
        assert primary.calls[-2:] == ["since 6", "list 0"] and sorted(rows) == ["dc1"]

    asyncio.run(scenario())

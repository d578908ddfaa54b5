"""Federation-state replication delegate (reference/federation.md §5.3) and its diff.

meshfed diffs by the primary's modify index stored with each replicated copy
(`primary_modify_index`) rather than Consul's "everything newer than the last remote index":
a new leader, whose last remote index starts at 0, then rewrites nothing that is already current
(operators.md #9196). When the primary's index went backwards (it was rebuilt, so its indexes mean
nothing to us), the diff compares content instead.

Once it holds an index, the replicator asks only for what changed since (`FederationState/ListSince`,
issue #13): with 1,000 DCs a change then costs one record on each side instead of the table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from meshfed.fsm.records import FederationState
from meshfed.replication.replicator import Diff


def same_content(local: FederationState, remote: FederationState) -> bool:
    return local.is_same(remote) and local.updated_at == remote.updated_at


def diff_federation_states(local: Sequence[FederationState], remote: Sequence[FederationState], full: bool) -> Diff[FederationState]:
    """Pure: which local rows to delete and which remote rows to write (as replicated copies)."""
    local_by_dc = {s.datacenter.lower(): s for s in local}
    remote_by_dc = {s.datacenter.lower(): s for s in remote}
    deletions = [local_by_dc[dc] for dc in sorted(local_by_dc) if dc not in remote_by_dc]
    updates = []
    for dc in sorted(remote_by_dc):
        theirs = remote_by_dc[dc]
        ours = local_by_dc.get(dc)
        if ours is None:
            changed = True
        elif full:
            changed = not same_content(ours, theirs)
        else:
            changed = ours.primary_modify_index != theirs.modify_index
        if changed:
            updates.append(replicated_copy(theirs))
    return Diff(deletions=deletions, updates=updates)


@dataclass(frozen=True)
class RemoteChanges:
    """The primary's `FederationState/ListSince` answer: records changed after our index, and the
    lower-cased datacenters deleted since."""

    states: tuple[FederationState, ...]
    deleted: tuple[str, ...]


def diff_federation_changes(lookup: Callable[[str], FederationState | None], changes: RemoteChanges) -> Diff[FederationState]:
    """Pure: the delta's counterpart of `diff_federation_states`, reading only the rows it names.
    A deleted datacenter we do not hold and a record we already hold at that primary index (a
    round applied twice) are skipped."""
    deletions = [ours for dc in sorted(set(changes.deleted)) if (ours := lookup(dc)) is not None]
    updates = []
    for theirs in changes.states:
        ours = lookup(theirs.datacenter)
        if ours is None or ours.primary_modify_index != theirs.modify_index:
            updates.append(replicated_copy(theirs))
    return Diff(deletions=deletions, updates=updates)


def replicated_copy(remote: FederationState) -> FederationState:
    """Local indexes come from our Raft; the primary's modify index is kept alongside."""
    return dataclasses.replace(remote, primary_modify_index=remote.modify_index, create_index=0, modify_index=0)


class FederationStateDelegate:
    name = "federation_state"

    def __init__(
        self,
        fetch: Callable[[int], Awaitable[tuple[int, list[FederationState]]]],
        local: Callable[[], list[FederationState]],
        upsert: Callable[[FederationState], Awaitable[None]],
        delete: Callable[[str], Awaitable[None]],
        fetch_changes: Callable[[int], Awaitable[tuple[int, RemoteChanges | None]]] | None = None,
        lookup: Callable[[str], FederationState | None] | None = None,
        upsert_many: Callable[[Sequence[FederationState]], Awaitable[None]] | None = None,
    ) -> None:
        # With `fetch_changes` (and `lookup` to read one local row) the replicator long-polls for
        # deltas once it holds an index; without, every round lists and diffs the whole table.
        self.fetch_changes = fetch_changes if lookup is not None else None
        self._lookup = lookup or (lambda dc: None)
        self._fetch = fetch
        self._local = local
        self._upsert = upsert
        self._delete = delete
        # With `upsert_many`, the replicator writes each paced batch of a resync as one command.
        self.update_many = upsert_many

    async def fetch_remote(self, min_index: int) -> tuple[int, list[FederationState]]:
        return await self._fetch(min_index)

    def local(self) -> list[FederationState]:
        return self._local()

    def diff(self, local: Sequence[FederationState], remote: Sequence[FederationState], full: bool) -> Diff[FederationState]:
        return diff_federation_states(local, remote, full)

    def diff_changes(self, changes: RemoteChanges) -> Diff[FederationState]:
        return diff_federation_changes(self._lookup, changes)

    async def delete_local(self, item: FederationState) -> None:
        await self._delete(item.datacenter)

    async def update_local(self, item: FederationState) -> None:
        await self._upsert(item)

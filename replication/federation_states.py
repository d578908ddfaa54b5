"""Federation-state replication delegate (reference/federation.md §5.3) and its diff.

meshfed diffs by the primary's modify index stored with each replicated copy
(`primary_modify_index`) rather than Consul's "everything newer than the last remote index":
a new leader, whose last remote index starts at 0, then rewrites nothing that is already current
(operators.md #9196). When the primary's index went backwards (it was rebuilt, so its indexes mean
nothing to us), the diff compares content instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

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
    ) -> None:
        self._fetch = fetch
        self._local = local
        self._upsert = upsert
        self._delete = delete

    async def fetch_remote(self, min_index: int) -> tuple[int, list[FederationState]]:
        return await self._fetch(min_index)

    def local(self) -> list[FederationState]:
        return self._local()

    def diff(self, local: Sequence[FederationState], remote: Sequence[FederationState], full: bool) -> Diff[FederationState]:
        return diff_federation_states(local, remote, full)

    async def delete_local(self, item: FederationState) -> None:
        await self._delete(item.datacenter)

    async def update_local(self, item: FederationState) -> None:
        await self._upsert(item)

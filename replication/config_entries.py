"""Config-entry replication delegate (connect-data §B.5), including service-intentions.

Diff by content hash, not by index, so a new leader (whose last remote index starts at 0)
rewrites nothing that is already current (operators.md #9196), and a rebuilt primary whose
indexes went backwards still converges. exported-services entries apply only in the primary and
are never replicated (§B.4). Replicated writes are applied as they are, without re-running
validation that could depend on another entry, so replication cannot get stuck on ordering
(operators.md #9319).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from meshfed.fsm.config_entries import entry_key
from meshfed.fsm.config_entries import without_store_fields as body_of
from meshfed.replication.replicator import Diff

NOT_REPLICATED = frozenset({"exported-services"})

Entry = Mapping[str, Any]


def diff_config_entries(
    local: Sequence[Entry], remote: Sequence[Entry], hash_of: Callable[[Mapping[str, Any]], int]
) -> Diff[Entry]:
    """Pure: local entries to delete and remote entries to write. `hash_of` hashes a body."""
    local_by_key = {entry_key(e): e for e in local if entry_key(e)[0] not in NOT_REPLICATED}
    remote_by_key = {entry_key(e): e for e in remote if entry_key(e)[0] not in NOT_REPLICATED}
    deletions = [local_by_key[k] for k in sorted(local_by_key) if k not in remote_by_key]
    updates = []
    for key in sorted(remote_by_key):
        theirs = remote_by_key[key]
        ours = local_by_key.get(key)
        if ours is None or hash_of(body_of(ours)) != hash_of(body_of(theirs)):
            updates.append(theirs)
    return Diff(deletions=deletions, updates=updates)


class ConfigEntryDelegate:
    name = "config_entry"

    def __init__(
        self,
        fetch: Callable[[int], Awaitable[tuple[int, list[Entry]]]],
        local: Callable[[], list[Entry]],
        upsert: Callable[[dict[str, Any]], Awaitable[None]],
        delete: Callable[[str, str], Awaitable[None]],
        hash_of: Callable[[Mapping[str, Any]], int],
    ) -> None:
        self._fetch = fetch
        self._local = local
        self._upsert = upsert
        self._delete = delete
        self._hash_of = hash_of

    async def fetch_remote(self, min_index: int) -> tuple[int, list[Entry]]:
        return await self._fetch(min_index)

    def local(self) -> list[Entry]:
        return self._local()

    def diff(self, local: Sequence[Entry], remote: Sequence[Entry], full: bool) -> Diff[Entry]:
        return diff_config_entries(local, remote, self._hash_of)

    async def delete_local(self, item: Entry) -> None:
        await self._delete(str(item["Kind"]), str(item["Name"]))

    async def update_local(self, item: Entry) -> None:
        await self._upsert(body_of(item))

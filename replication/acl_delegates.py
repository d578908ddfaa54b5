"""ACL replication delegates: policies, roles and global tokens (reference/acl.md §6.3).

Consul runs three routines on a secondary's leader, one per table; meshfed runs three delegates
on the shared `Replicator`, so pacing, backoff, status and logging are the federation states'.

Diff by ID and content hash, not by index: the hash (BLAKE2b over what Consul hashes, no IDs or
indexes) is recomputed by the local apply, so a copy of an unchanged object hashes the same and a
new leader, whose last remote index starts at 0, rewrites nothing that is already current; a
rebuilt primary whose indexes went backwards still converges.

Token rules, which are the point of this file:
- only global tokens are replicated; the primary sends none with `Local=true`, and tokens created
  locally in this secondary are never deleted by a round (they are not the primary's to judge);
- a token list whose secrets come back redacted means the replication token lacks `acl:write`:
  the round fails with Consul's text instead of storing tokens nobody could use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from meshfed.fsm.acl.records import ACLPolicy, ACLRole, ACLToken
from meshfed.replication.replicator import Diff

HIDDEN_SECRET = "<hidden>"
ERR_REDACTED_TOKENS = (
    "failed to retrieve unredacted tokens - replication token in use does not grant acl:write"
)


R = TypeVar("R", ACLPolicy, ACLRole, ACLToken)


def key_of(record: ACLPolicy | ACLRole | ACLToken) -> str:
    return record.accessor_id if isinstance(record, ACLToken) else record.id


def diff_acl(local: Sequence[R], remote: Sequence[R], replicated: Callable[[R], bool] = lambda r: True) -> Diff[R]:
    """Pure: local records to delete and remote records to write.

    `replicated(record)` says whether a local record is the primary's copy at all (a secondary's
    local tokens are not): only those can be deleted for missing from the remote list."""
    local_by_key = {key_of(r): r for r in local if replicated(r)}
    remote_by_key = {key_of(r): r for r in remote}
    deletions = [local_by_key[k] for k in sorted(local_by_key) if k not in remote_by_key]
    updates = []
    for key in sorted(remote_by_key):
        ours = local_by_key.get(key)
        if ours is None or ours.hash != remote_by_key[key].hash:
            updates.append(remote_by_key[key])
    return Diff(deletions=deletions, updates=updates)


def check_unredacted(tokens: Sequence[ACLToken]) -> None:
    """Raises Consul's error when the primary hid the secrets (the token lacks acl:write)."""
    if any(token.secret_id == HIDDEN_SECRET for token in tokens):
        raise PermissionError(ERR_REDACTED_TOKENS)


class ACLDelegate(Generic[R]):
    """One ACL table's delegate; `name` is also the status and metric label (Consul's
    `acl-policies`, `acl-roles`, `acl-tokens`, written with underscores)."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[int], Awaitable[tuple[int, list[R]]]],
        local: Callable[[], list[R]],
        upsert: Callable[[R], Awaitable[None]],
        delete: Callable[[str], Awaitable[None]],
        replicated: Callable[[R], bool] = lambda record: True,
        check: Callable[[list[R]], None] = lambda records: None,
    ) -> None:
        self.name = name
        self.what = name  # "failed to retrieve acl_tokens: ..."
        self._fetch = fetch
        self._local = local
        self._upsert = upsert
        self._delete = delete
        self._replicated = replicated
        self._check = check

    async def fetch_remote(self, min_index: int) -> tuple[int, list[R]]:
        index, records = await self._fetch(min_index)
        self._check(records)
        return index, records

    def local(self) -> list[R]:
        return self._local()

    def diff(self, local: Sequence[R], remote: Sequence[R], full: bool) -> Diff[R]:
        return diff_acl(local, remote, self._replicated)

    async def delete_local(self, item: R) -> None:
        await self._delete(key_of(item))

    async def update_local(self, item: R) -> None:
        await self._upsert(item)


def policy_delegate(fetch: Any, local: Any, upsert: Any, delete: Any) -> ACLDelegate[ACLPolicy]:
    return ACLDelegate("acl_policies", fetch, local, upsert, delete)


def role_delegate(fetch: Any, local: Any, upsert: Any, delete: Any) -> ACLDelegate[ACLRole]:
    return ACLDelegate("acl_roles", fetch, local, upsert, delete)


def token_delegate(fetch: Any, local: Any, upsert: Any, delete: Any) -> ACLDelegate[ACLToken]:
    return ACLDelegate(
        "acl_tokens", fetch, local, upsert, delete,
        replicated=lambda token: not token.local, check=check_unredacted,
    )

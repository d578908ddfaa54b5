"""Deleting expired ACL tokens: a leader routine, like TTL reaping (`ttl.py`).

An expired token already fails on every server at its `ExpirationTime` (the resolver and the
token endpoints compare it with their own clock), so this is housekeeping, not enforcement:
without it expired tokens would stay in the tables, the snapshots and `acl token list` forever.
The deletes are ordinary `ACLTokenDelete` commands through Raft, so every replica (and, through
ACL replication, every secondary) removes the same tokens. The decision of which tokens is pure
(`fsm/acl/expiry.py`): the primary's leader reaps global and local tokens, a secondary's leader
only its local ones.

A scan costs one pass over the tokens that have an expiration (`acl_expiring_tokens`), so it
runs every second; deletes go in batches so one scan after a long outage cannot build a Raft
entry past the group-commit limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from meshfed.fsm import ACLTokenDelete, Command, Result
from meshfed.fsm.acl.expiry import Expiring, reapable

log = logging.getLogger(__name__)

SCAN_INTERVAL = 1.0
BATCH_SIZE = 128  # deletes per proposal (Consul's reaper deletes in batches too)


class _Reads(Protocol):
    def acl_expiring_tokens(self) -> tuple[int, list[Expiring]]: ...


class _Proposer(Protocol):
    async def apply(self, commands: Sequence[tuple[str, Command]], timeout: float = 5.0) -> list[Result]: ...


async def reap_once(state: _Reads, raft: _Proposer, *, primary: bool, now: float) -> int:
    """Delete the tokens that are reapable at `now`; returns how many were deleted."""
    accessors = reapable(state.acl_expiring_tokens()[1], now, primary=primary)
    deleted = 0
    for start in range(0, len(accessors), BATCH_SIZE):
        batch = accessors[start:start + BATCH_SIZE]
        results = await raft.apply([("", ACLTokenDelete(accessor)) for accessor in batch])
        for accessor, result in zip(batch, results, strict=True):
            if result.ok and result.value:
                deleted += 1
            elif not result.ok:
                log.error("cannot delete expired ACL token %s: %s", accessor, result.error)
    if deleted:
        log.info("deleted %d expired ACL token(s)", deleted)
    return deleted


async def reap_expired_tokens(
    state: _Reads,
    raft: _Proposer,
    *,
    primary: bool,
    clock: Callable[[], float] = time.time,
    on_reaped: Callable[[int], None] | None = None,
) -> None:
    """The leader routine: scan, delete, sleep, forever (cancelled on step-down)."""
    while True:
        deleted = await reap_once(state, raft, primary=primary, now=clock())
        if deleted and on_reaped is not None:
            on_reaped(deleted)
        await asyncio.sleep(SCAN_INTERVAL)

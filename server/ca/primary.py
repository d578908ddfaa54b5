"""The primary datacenter's Connect CA leader routine (reference connect-data.md §C.2).

`bootstrap_primary_ca`: on the first election of the cluster there is no CA record; the leader
makes a cluster id and a root and stores both with one compare-and-set write (cas=0), so two
leaders racing cannot both create one. Every later leader finds the record and does nothing: the
trust domain is stable across restarts and leader changes. A failure is retried in this task with
backoff (the shared `RoundLoop`), never holding up leadership or the other routines. Once
bootstrapped the task stays on to prune, hourly, roots rotated out longer than 2 x LeafCertTTL ago.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random

from meshfed.fsm.records import CAState
from meshfed.replication.loop import ReplicationStatus, RoundLoop
from meshfed.server import ca
from meshfed.server.ca import (
    MAX_CAS_ATTEMPTS,
    Clock,
    active_root,
    config_record,
    is_initialized,
    next_serial,
    roots_for_write,
    stored_config,
    utc_now,
)
from meshfed.server.ca.leader import CAStore, Sleep, ca_backoff, store_ca_state
from meshfed.server.endpoints.ports import Proposer

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0
BOOTSTRAP_BACKOFF_MAX = 60.0


async def ensure_primary_ca(
    state: CAStore, raft: Proposer, config: ca.CAConfig | None = None, clock: Clock = utc_now
) -> bool:
    """Bootstrap the CA unless a record with an active root exists (§C.2 steps 1-4); True if it wrote.

    A stored configuration wins over `config` (an operator's PUT must survive the next election),
    and a stored cluster id is never replaced.
    """
    for _ in range(MAX_CAS_ATTEMPTS):
        _, stored = state.ca_state()
        if is_initialized(stored) and active_root(stored.roots if stored else ()) is not None:
            return False
        cluster_id = stored.cluster_id if stored is not None and stored.cluster_id else ca.new_cluster_id()
        base = stored_config(stored) if stored is not None and stored.config else (config or ca.CAConfig())
        ca_config = dataclasses.replace(base, cluster_id=cluster_id)
        roots = roots_for_write(stored)
        now = clock()
        root = ca.generate_root(cluster_id, now, ca_config, next_serial(roots))
        roots = ca.rotate(roots, root, now)
        record = CAState(cluster_id=cluster_id, config=config_record(ca_config), roots=tuple(roots))
        if await store_ca_state(raft, record, stored.modify_index if stored is not None else 0):
            log.info("Connect CA initialized: trust domain %s, active root %s",
                     ca.trust_domain(cluster_id), root["ID"])
            return True
    raise RuntimeError(f"CA state changed concurrently {MAX_CAS_ATTEMPTS} times in a row")


async def prune_primary_ca(state: CAStore, raft: Proposer, clock: Clock = utc_now) -> int:
    """Remove roots rotated out more than 2 x LeafCertTTL ago (§C.2 step 7); returns how many."""
    _, stored = state.ca_state()
    if stored is None or not is_initialized(stored):
        return 0
    roots = roots_for_write(stored)
    kept = ca.prune(roots, clock(), stored_config(stored).leaf_cert_ttl_seconds)
    removed = len(roots) - len(kept)
    if not removed:
        return 0
    record = CAState(cluster_id=stored.cluster_id, config=dict(stored.config), roots=tuple(kept))
    if not await store_ca_state(raft, record, stored.modify_index):
        return 0  # a concurrent write (e.g. a rotation) wins; the next hourly run looks again
    log.info("pruned %d rotated-out CA root(s)", removed)
    return removed


async def bootstrap_primary_ca(
    state: CAStore,
    raft: Proposer,
    *,
    config: ca.CAConfig | None = None,
    clock: Clock = utc_now,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    prune_interval: float = PRUNE_INTERVAL,
) -> None:
    """Leader routine of the primary: bootstrap (retrying with backoff), then prune hourly."""

    async def bootstrap_round(status: ReplicationStatus) -> int:
        await ensure_primary_ca(state, raft, config, clock)
        return 0  # nothing to block on: done once it succeeds

    await RoundLoop(
        "connect_ca_bootstrap", bootstrap_round, label="Connect CA bootstrap",
        backoff=ca_backoff(BOOTSTRAP_BACKOFF_MAX), sleep=sleep, rng=rng,
    ).run_until_success()
    while True:
        await sleep(prune_interval)
        try:
            await prune_primary_ca(state, raft, clock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("Connect CA root pruning failed, retrying in %.0fs: %s", prune_interval, exc)

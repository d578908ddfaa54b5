"""Leader routines of the Connect CA (reference connect-data.md §C.2, §C.3).

Primary leader, `bootstrap_primary_ca`: on the first election of the cluster there is no CA
record; the leader makes a cluster id and a root and stores both with one compare-and-set write
(cas=0), so two leaders racing cannot both create one. Every later leader finds the record and
does nothing: the trust domain is stable across restarts and leader changes. A failure is retried
in this task with backoff (the shared `RoundLoop`), never holding up leadership or the other
routines. Once bootstrapped the task stays on to prune, hourly, roots rotated out longer than
2 x LeafCertTTL ago.

Secondary leader, `SecondaryCA.run`: watches the primary's roots with blocking queries, one
`SecondaryCA.round` at a time driven by the shared `RoundLoop` (rate 0.2/s, burst 5; backoff on
failure up to 256 s). A round:
    fetch roots + configuration from the primary
    -> decide (pure, `intermediate_reason`): none stored / primary's active root changed /
       our intermediate does not match our SigningKeyID / past its half-life
    -> if needed: CSR (key stays here) -> ConnectCA/SignIntermediate at the primary
       -> our copy of the primary's active root, signing with our intermediate (`secondary_root`)
    -> store roots + the primary's cluster id and configuration with one CAS write, if different.
If the primary is unreachable or refuses, nothing local changes: the DC keeps serving the roots
and intermediate it has. Status is a `ReplicationStatus` named "ca_roots", like the replicators'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from cryptography import x509

from meshfed.fsm import CAStateSet, Command, Result
from meshfed.fsm.consul_formats.timestamps import parse_rfc3339
from meshfed.fsm.records import CAState
from meshfed.replication.loop import Backoff, ReplicationStatus, RoundLoop
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server import ca
from meshfed.server.ca import (
    MAX_CAS_ATTEMPTS,
    active_root,
    config_record,
    is_initialized,
    keep_create_indexes,
    next_serial,
    roots_for_write,
    stored_config,
    utc_now,
)
from meshfed.server.endpoints.writes import propose

log = logging.getLogger(__name__)

CA_ROOTS = "ca_roots"  # the status name /v1/internal/replication and the metrics use
PRUNE_INTERVAL = 3600.0
BOOTSTRAP_BACKOFF_MAX = 60.0
# Consul's secondaryCARootWatch: 0.2 rounds/s, burst 5, backoff to 256 s.
WATCH_RATE = 0.2
WATCH_BURST = 5
WATCH_BACKOFF_MAX = 256.0
BACKOFF_BASE = 1.0
BACKOFF_JITTER = 0.10
# Renew a secondary's intermediate once this fraction of its lifetime has passed (§C.3).
INTERMEDIATE_RENEW_FRACTION = 0.5

Clock = Callable[[], datetime.datetime]
Sleep = Callable[[float], Awaitable[None]]
# (method, header, body) -> (meta, body): the ConnectCA endpoint's handlers, routed by the router.
RemoteCall = Callable[[str, RequestHeader, Any], Awaitable[tuple[QueryMeta, Any]]]


class CAStore(Protocol):
    def ca_state(self) -> tuple[int, CAState | None]: ...


class Proposer(Protocol):
    async def apply(self, commands: Sequence[tuple[str, Command]], timeout: float = ...) -> list[Result]: ...


def ca_backoff(cap: float) -> Backoff:
    """1 s doubling to `cap`, plus up to 10 % jitter: the bootstrap's and the watch's schedule."""
    return Backoff(BACKOFF_BASE, cap, BACKOFF_JITTER)


def backoff(consecutive_failures: int, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after `consecutive_failures` in a row; 0 before the first failure."""
    return ca_backoff(cap).delay(consecutive_failures, rng)


async def _store(raft: Proposer, state: CAState, cas: int) -> bool:
    """One CAS write of the whole record; False when another write got there first."""
    result = await propose(raft, uuid.uuid4().hex, CAStateSet(state, cas=cas))
    return result.value is not False


# --------------------------------------------------------------------------------------------------
# Primary


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
        if await _store(raft, record, stored.modify_index if stored is not None else 0):
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
    if not await _store(raft, record, stored.modify_index):
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


# --------------------------------------------------------------------------------------------------
# Secondary: decisions (pure)


def cluster_id_of(trust_domain: str) -> str:
    """The primary's cluster id: its trust domain up to the first dot (§C.3)."""
    cluster_id = trust_domain.split(".", 1)[0] if isinstance(trust_domain, str) else ""
    if not cluster_id:
        raise ValueError(f"primary's TrustDomain {trust_domain!r} has no cluster id")
    return cluster_id


def primary_active_root(roots_body: Mapping[str, Any]) -> Mapping[str, Any]:
    active_id = roots_body.get("ActiveRootID")
    for root in roots_body.get("Roots") or ():
        if root.get("ID") == active_id and root.get("Active"):
            return root
    raise ValueError(f"primary's roots have no active root (ActiveRootID {active_id!r})")


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in data)


def intermediate_reason(
    local: CAState | None, primary_roots: Mapping[str, Any], now: datetime.datetime
) -> str:
    """Why this secondary needs a new intermediate, or "" when the one it has is good (§C.3)."""
    primary_active = primary_active_root(primary_roots)
    if local is None or not is_initialized(local):
        return "no CA stored yet"
    if local.cluster_id != cluster_id_of(primary_roots.get("TrustDomain", "")):
        return "the primary's cluster id changed"
    ours = active_root(local.roots)
    if ours is None:
        return "no active root stored"
    if ours.get("ID") != primary_active.get("ID"):
        return f"the primary's active root changed to {primary_active.get('ID')}"
    intermediates = ours.get("IntermediateCerts") or ()
    if not intermediates or not ours.get("SigningKey"):
        return "no intermediate for the primary's active root"
    try:
        cert = x509.load_pem_x509_certificate(str(intermediates[-1]).encode())
        key_id = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (ValueError, x509.ExtensionNotFound):
        return "the stored intermediate is unreadable"
    if _colon_hex(key_id) != ours.get("SigningKeyID"):
        return "the stored SigningKeyID does not match the intermediate"
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    moment = now if now.tzinfo is not None else now.replace(tzinfo=datetime.UTC)
    if moment >= start + (end - start) * INTERMEDIATE_RENEW_FRACTION and end < _root_not_after(primary_active):
        # Only when a new one can last longer: an intermediate never outlives its root, so near
        # the root's end renewing would just repeat every round.
        return "the intermediate is past half of its lifetime"
    return ""


def _root_not_after(root: Mapping[str, Any]) -> datetime.datetime:
    text = root.get("NotAfter")
    try:
        return parse_rfc3339(str(text))
    except ValueError:
        return datetime.datetime.max.replace(tzinfo=datetime.UTC)


def _same_record(local: CAState | None, wanted: CAState) -> bool:
    if local is None:
        return False
    return (local.cluster_id, dict(local.config), roots_for_write(local)) == (
        wanted.cluster_id,
        dict(wanted.config),
        list(wanted.roots),
    )


# --------------------------------------------------------------------------------------------------
# Secondary: the watch loop


class SecondaryCA:
    """The secondary leader's root watch. One object per server; `run` is the leader routine
    (a fresh round state each term), `status` is what /v1/internal/replication lists."""

    def __init__(
        self,
        *,
        datacenter: str,
        primary_datacenter: str,
        state: CAStore,
        raft: Proposer,
        call: RemoteCall,
        clock: Clock = utc_now,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        rate: float = WATCH_RATE,
        burst: int = WATCH_BURST,
        on_round: Callable[[ReplicationStatus], None] | None = None,
    ) -> None:
        self.datacenter = datacenter
        self.primary_datacenter = primary_datacenter
        self._state = state
        self._raft = raft
        self._call = call
        self._clock = clock
        self._loop = RoundLoop(
            CA_ROOTS, self._round, label="secondary CA root watch (keeping the current roots)",
            backoff=ca_backoff(WATCH_BACKOFF_MAX), rate=rate, burst=burst, on_round=on_round,
            wall_clock=wall_clock, sleep=sleep, rng=rng,
        )
        self.status = self._loop.status

    async def run(self) -> None:
        """Rounds until cancelled (step-down). A failed round changes nothing locally."""
        await self._loop.run()

    async def round(self) -> None:
        """One round with its status bookkeeping, outside the loop's pacing."""
        await self._loop.attempt()

    def _primary_header(self, min_index: int = 0) -> RequestHeader:
        return RequestHeader(datacenter=self.primary_datacenter, allow_stale=True, min_query_index=min_index)

    async def _round(self, status: ReplicationStatus) -> int:
        meta, body = await self._call("ConnectCA/Roots", self._primary_header(status.last_remote_index), {})
        primary_roots = body["roots"]
        remote_index = meta.index
        _, config_body = await self._call("ConnectCA/GetConfiguration", self._primary_header(), {})
        cluster_id = cluster_id_of(primary_roots.get("TrustDomain", ""))
        primary_config = ca.config_from_request(config_body["config"], ca.CAConfig(cluster_id=cluster_id))

        _, local = self._state.ca_state()
        now = self._clock()
        before = roots_for_write(local) if local is not None else []
        roots = list(before)
        reason = intermediate_reason(local, primary_roots, now)
        if reason:
            roots = keep_create_indexes(before, ca.rotate(roots, await self._new_root(primary_roots, primary_config), now))
        roots = ca.prune(roots, now, primary_config.leaf_cert_ttl_seconds)
        wanted = CAState(cluster_id=cluster_id, config=config_record(primary_config), roots=tuple(roots))
        if not _same_record(local, wanted):
            if await _store(self._raft, wanted, local.modify_index if local is not None else 0):
                status.applies += 1
                if reason:
                    log.info("secondary CA: stored a new intermediate for root %s (%s)",
                             primary_active_root(primary_roots).get("ID"), reason)
            else:
                # Our own record moved under us (another write); decide again at once.
                remote_index = 0

        if 0 < remote_index < status.last_remote_index:
            log.warning("secondary CA root watch: primary index went backwards (%d -> %d)",
                        status.last_remote_index, remote_index)
            remote_index = 0
        return remote_index

    async def _new_root(self, primary_roots: Mapping[str, Any], config: ca.CAConfig) -> dict[str, Any]:
        """A CSR signed by the primary, turned into our copy of its active root (§C.3)."""
        primary_active = primary_active_root(primary_roots)
        csr_pem, key_pem = ca.make_intermediate_csr(config.cluster_id, self.datacenter, config)
        header = RequestHeader(datacenter=self.primary_datacenter, request_id=uuid.uuid4().hex)
        _, body = await self._call("ConnectCA/SignIntermediate", header, {"csr": csr_pem})
        return ca.secondary_root(primary_active, body["cert"], key_pem)

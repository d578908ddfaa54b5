"""A secondary datacenter's Connect CA leader routine: the root watch (reference connect-data.md §C.3).

`SecondaryCA.run` watches the primary's roots with blocking queries, one `SecondaryCA.round` at a
time driven by the shared `RoundLoop` (rate 0.2/s, burst 5; backoff on failure up to 256 s).
A round:
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
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cryptography import x509

from meshfed.fsm.consul_formats.timestamps import as_utc, parse_rfc3339
from meshfed.fsm.records import CAState
from meshfed.replication.loop import ReplicationStatus, RoundLoop
from meshfed.rpc.header import QueryMeta, RequestHeader, new_request_id
from meshfed.server import ca
from meshfed.server.ca import (
    Clock,
    active_root,
    config_record,
    is_initialized,
    keep_create_indexes,
    roots_for_write,
    utc_now,
)
from meshfed.server.ca.identity import colon_hex, subject_key_id
from meshfed.server.ca.leader import CAStore, Sleep, ca_backoff, store_ca_state
from meshfed.server.endpoints.ports import Proposer

log = logging.getLogger(__name__)

CA_ROOTS = "ca_roots"  # the status name /v1/internal/replication and the metrics use
# Consul's secondaryCARootWatch: 0.2 rounds/s, burst 5, backoff to 256 s.
WATCH_RATE = 0.2
WATCH_BURST = 5
WATCH_BACKOFF_MAX = 256.0
# Renew a secondary's intermediate once this fraction of its lifetime has passed (§C.3).
INTERMEDIATE_RENEW_FRACTION = 0.5

# (method, header, body) -> (meta, body): the ConnectCA endpoint's handlers, routed by the router.
RemoteCall = Callable[[str, RequestHeader, Any], Awaitable[tuple[QueryMeta, Any]]]


# --------------------------------------------------------------------------------------------------
# Decisions (pure)


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
        key_id = subject_key_id(cert)
    except ValueError:
        return "the stored intermediate is unreadable"
    if colon_hex(key_id) != ours.get("SigningKeyID"):
        return "the stored SigningKeyID does not match the intermediate"
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if as_utc(now) >= start + (end - start) * INTERMEDIATE_RENEW_FRACTION and end < _root_not_after(primary_active):
        # Only when a new one can last longer: an intermediate never outlives its root, so near
        # the root's end renewing would just repeat every round.
        return "the intermediate is past half of its lifetime"
    return ""


def _root_not_after(root: Mapping[str, Any]) -> datetime.datetime:
    """The root's NotAfter; a root that does not say is treated as never ending, so renewal is
    decided by the intermediate's own half-life alone."""
    try:
        return parse_rfc3339(str(root.get("NotAfter")))
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
# The watch loop


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
        token: str = "",
    ) -> None:
        self.datacenter = datacenter
        # acl.tokens.replication: the primary checks operator:write on SignIntermediate.
        self._token = token
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
        return RequestHeader(datacenter=self.primary_datacenter, allow_stale=True, min_query_index=min_index,
                             token=self._token)

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
            if await store_ca_state(self._raft, wanted, local.modify_index if local is not None else 0):
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
        header = RequestHeader(datacenter=self.primary_datacenter, request_id=new_request_id(), token=self._token)
        _, body = await self._call("ConnectCA/SignIntermediate", header, {"csr": csr_pem})
        return ca.secondary_root(primary_active, body["cert"], key_pem)

"""Replication wiring of one server: what the secondary leader copies from the primary, and how
it is reported.

The secondary's leader runs one `Replicator` per replicated type (federation states, config
entries, and with ACLs on: policies, roles and, with `enable_token_replication`, global tokens),
each a fresh loop per leadership term. Every fetch carries `acl.tokens.replication`, so a primary
with default deny still answers; the closures here are the server-side halves of
their delegates (fetch from the primary through the router, apply through local Raft). Only
federation-state fetches feed the gateway locator's replication signal (reference §7.3). The
secondary CA's root watch registers its status here too, so /v1/internal/replication and the
replication gauges list every loop that copies from the primary. On step-down the gauges read
"not in sync".
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import grpc
from prometheus_client.core import GaugeMetricFamily

from meshfed.fsm import (
    ACLPolicyBatchSet,
    ACLPolicyDelete,
    ACLRoleBatchSet,
    ACLRoleDelete,
    ACLTokenBatchSet,
    ACLTokenDelete,
    ConfigEntryDelete,
    ConfigEntrySet,
    FederationStateBatchUpsert,
    FederationStateDelete,
    FederationStateUpsert,
)
from meshfed.fsm.config_entries import content_hash
from meshfed.fsm.consul_formats.timestamps import format_rfc3339
from meshfed.fsm.log_entries import TAG_FEDERATION_STATE_BATCH_UPSERT
from meshfed.fsm.records import ConfigEntry, FederationState, federation_state_from_wire
from meshfed.fsm.state import StateStore
from meshfed.replication.acl_delegates import policy_delegate, role_delegate, token_delegate
from meshfed.replication.config_entries import ConfigEntryDelegate
from meshfed.replication.federation_states import FederationStateDelegate, RemoteChanges
from meshfed.replication.loop import ReplicationStatus
from meshfed.replication.replicator import Delegate, Replicator
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader, new_request_id
from meshfed.server.config.loader import Config
from meshfed.server.endpoints.acl import ACLEndpoint
from meshfed.server.endpoints.acl_replication import disabled_status
from meshfed.server.endpoints.config_entry import ConfigEntryEndpoint, entry_json
from meshfed.server.endpoints.federation_state import FederationStateEndpoint
from meshfed.server.endpoints.writes import propose, raise_for
from meshfed.server.leader.log_support import LogCommandSupport
from meshfed.server.leader.routines import LeaderRoutines
from meshfed.server.metrics import Metrics, gauge
from meshfed.server.raft import RaftNode
from meshfed.server.wan.gateway_locator import GatewayLocator

REPLICATED = ("federation_state", "config_entry")
# A full resync of 1,000 DCs one record per paced apply took 10 s at the default limit of 100/s;
# this many records per paced step are written as one `FederationStateBatchUpsert` (one log entry,
# ~170 KB with 4 gateways each: Raft sends it in chunks; its apply is ~0.1 s on the tick thread).
FEDERATION_APPLY_BATCH = 64
# "0" turns off the delta long-poll (FederationState/ListSince) and batched applies: every round
# lists the whole table and applies one record per paced step, as before issue #13. Read when a leadership term starts; for benchmarks' same-run baselines.
DELTA_ENV = "MESHFED_FEDERATION_DELTA"


def delta_replication_enabled() -> bool:
    return os.environ.get(DELTA_ENV, "1") != "0"
ACL_REPLICATED = ("acl_policies", "acl_roles", "acl_tokens")
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, as Consul shows "never"


def _rfc3339(unix: float) -> str:
    return format_rfc3339(datetime.datetime.fromtimestamp(unix, datetime.UTC)) if unix else ZERO_TIME


def acl_replication_json(config: Config, statuses: dict[str, ReplicationStatus]) -> dict[str, Any]:
    """Consul's `GET /v1/acl/replication` body from this leader's ACL loops (reference/acl.md §6.3).

    Pure. Each of Consul's routines updates one shared status, so LastSuccess and LastError are the
    latest of any loop and LastErrorMessage is the message of the latest error."""
    if config.is_primary or not config.acl.enabled:
        return disabled_status()
    tokens = config.acl.enable_token_replication
    loops = [statuses[name] for name in ACL_REPLICATED if name in statuses and (tokens or name != "acl_tokens")]
    latest_error = max(loops, key=lambda status: status.last_error, default=None)
    return {
        "Enabled": True,
        "Running": bool(loops) and all(status.running for status in loops),
        "SourceDatacenter": config.primary,
        "ReplicationType": "tokens" if tokens else "policies",
        "ReplicatedIndex": statuses["acl_policies"].last_remote_index if "acl_policies" in statuses else 0,
        "ReplicatedRoleIndex": statuses["acl_roles"].last_remote_index if "acl_roles" in statuses else 0,
        "ReplicatedTokenIndex": statuses["acl_tokens"].last_remote_index if "acl_tokens" in statuses else 0,
        "LastSuccess": _rfc3339(max((status.last_success for status in loops), default=0.0)),
        "LastError": _rfc3339(latest_error.last_error if latest_error else 0.0),
        "LastErrorMessage": latest_error.last_error_message if latest_error and latest_error.last_error else "",
    }


class SecondaryReplication:
    def __init__(
        self,
        config: Config,
        *,
        state: StateStore,
        raft: RaftNode,
        locator: GatewayLocator,
        endpoint: FederationStateEndpoint,
        config_entries: ConfigEntryEndpoint,
        metrics: Metrics,
        acl: ACLEndpoint | None = None,
        log_support: LogCommandSupport | None = None,
    ) -> None:
        self.config = config
        self._acl = acl
        # None: every member is taken to run this version (tests that wire one server).
        self._log_support = log_support
        self._state = state
        self._raft = raft
        self._locator = locator
        self._endpoint = endpoint
        self._config_entries = config_entries
        self._metrics = metrics
        self.statuses: dict[str, ReplicationStatus] = {name: ReplicationStatus(name) for name in REPLICATED}

    def add_leader_routines(self, routines: LeaderRoutines) -> None:
        """Secondaries only: the primary is the source, it replicates nothing."""
        if self.config.is_primary:
            return
        routines.add("federation-state-replication", self._replicate_federation_states)
        routines.add("config-entry-replication", self._replicate_config_entries)
        if self.config.acl.enabled and self._acl is not None:
            routines.add("acl-policy-replication", self._replicate_acl_policies)
            routines.add("acl-role-replication", self._replicate_acl_roles)
            if self.config.acl.enable_token_replication:
                routines.add("acl-token-replication", self._replicate_acl_tokens)

    def track(self, status: ReplicationStatus) -> None:
        """List a loop that runs elsewhere (the secondary CA's root watch) with the replicators."""
        self.statuses[status.name] = status

    def on_step_down(self) -> None:
        for status in self.statuses.values():
            status.running = False
            status.in_sync = False

    def replication_round(self, status: ReplicationStatus) -> None:
        """Metric hook of every replicating loop, called after each round."""
        self._metrics.replication_status[status.name].set(1 if status.in_sync else 0)
        self._metrics.replication_index[status.name].set(status.last_remote_index)

    def _primary_header(self, min_index: int) -> RequestHeader:
        """A replication read from the primary, with the replication token (reference/acl.md §6.3:
        the same token replicates ACLs, config entries, federation states and the CA)."""
        return RequestHeader(datacenter=self.config.primary, allow_stale=True, min_query_index=min_index,
                             token=self.config.acl.tokens.replication)

    def acl_status(self) -> dict[str, Any]:
        return acl_replication_json(self.config, self.statuses)

    # ---- federation states ---------------------------------------------------------------------

    async def _fetch_remote(self, min_index: int) -> tuple[int, list[FederationState]]:
        header = self._primary_header(min_index)
        meta, states = await self._endpoint.list(header, {})
        return meta.index, [federation_state_from_wire(s) for s in states]

    async def _fetch_changes(self, since: int) -> tuple[int, RemoteChanges | None]:
        """A long-poll for what changed after `since`; None asks for a full resync, also when the
        primary predates ListSince (UNIMPLEMENTED) or our token may List but not ListSince."""
        header = self._primary_header(since)
        try:
            meta, body = await self._endpoint.list_since(header, {"since": since})
        except RPCError as exc:
            if exc.code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED):
                return 0, None
            raise
        if not isinstance(body, dict) or body.get("resync", True):
            return meta.index, None
        states = tuple(federation_state_from_wire(s) for s in body.get("states") or ())
        return meta.index, RemoteChanges(states, tuple(str(dc) for dc in body.get("deleted") or ()))

    async def _upsert_local(self, state: FederationState) -> None:
        await propose(self._raft, new_request_id(), FederationStateUpsert(state))

    async def _upsert_many_local(self, states: Sequence[FederationState]) -> None:
        # Proposed without `propose`'s shape check: every server's apply type-checks and validates
        # the entry (decode_batch, then validate), and a bad state fails the whole command there
        # with the same error, changing nothing. Walking 64 states here too was a second full type
        # check on the leader of each resync batch, on the event loop next to the Raft thread.
        if self._log_support is not None and not await self._log_support.all_support(TAG_FEDERATION_STATE_BATCH_UPSERT):
            # A member of an older version would reject the batch and miss its states: one
            # command per state, as before the batch existed.
            await asyncio.gather(*(self._upsert_local(state) for state in states))
            return
        (result,) = await self._raft.apply([(new_request_id(), FederationStateBatchUpsert(tuple(states)))])
        raise_for(result)

    async def _delete_local(self, datacenter: str) -> None:
        await propose(self._raft, new_request_id(), FederationStateDelete(datacenter))

    async def _replicate_federation_states(self) -> None:
        delegate = FederationStateDelegate(
            fetch=self._fetch_remote,
            local=lambda: self._state.federation_state_list()[1],
            upsert=self._upsert_local,
            delete=self._delete_local,
            fetch_changes=self._fetch_changes if delta_replication_enabled() else None,
            lookup=lambda dc: self._state.federation_state_get(dc)[1],
            upsert_many=self._upsert_many_local if delta_replication_enabled() else None,
        )
        try:
            # Only federation-state fetches feed the locator's replication signal (reference §7.3).
            await self._run_replicator(
                delegate, lambda error: self._locator.set_replication_result(error, from_replication=True),
                apply_batch=FEDERATION_APPLY_BATCH if delta_replication_enabled() else 1,
            )
        finally:
            self._locator.reset_replication_signal()

    # ---- config entries ------------------------------------------------------------------------

    async def _fetch_config_entries(self, min_index: int) -> tuple[int, list[dict[str, Any]]]:
        header = self._primary_header(min_index)
        meta, entries = await self._config_entries.list_all(header, {})
        return meta.index, entries

    async def _upsert_config_entry(self, body: dict[str, Any]) -> None:
        record = ConfigEntry.of(body)
        await propose(self._raft, new_request_id(), ConfigEntrySet(record))

    async def _delete_config_entry(self, kind: str, name: str) -> None:
        await propose(self._raft, new_request_id(), ConfigEntryDelete(kind, name))

    async def _replicate_config_entries(self) -> None:
        delegate = ConfigEntryDelegate(
            fetch=self._fetch_config_entries,
            local=lambda: [entry_json(r) for r in self._state.config_entry_list()[1]],
            upsert=self._upsert_config_entry,
            delete=self._delete_config_entry,
            hash_of=content_hash,
        )
        await self._run_replicator(delegate, None)

    # ---- ACL policies, roles, tokens --------------------------------------------------------------

    def _acl_fetch(self, method: str) -> Callable[[int], Awaitable[tuple[int, list[Any]]]]:
        acl = self._acl
        assert acl is not None
        return lambda min_index: acl.fetch_replicated(method, self._primary_header(min_index))

    async def _propose(self, command: Any) -> None:
        await propose(self._raft, new_request_id(), command)

    async def _replicate_acl_policies(self) -> None:
        delegate = policy_delegate(
            self._acl_fetch("ACL/PolicyReplicate"), lambda: self._state.acl_policies()[1],
            lambda policy: self._propose(ACLPolicyBatchSet((policy,))),
            lambda policy_id: self._propose(ACLPolicyDelete(policy_id)),
        )
        await self._run_replicator(delegate, None)

    async def _replicate_acl_roles(self) -> None:
        delegate = role_delegate(
            self._acl_fetch("ACL/RoleReplicate"), lambda: self._state.acl_roles()[1],
            lambda role: self._propose(ACLRoleBatchSet((role,))),
            lambda role_id: self._propose(ACLRoleDelete(role_id)),
        )
        await self._run_replicator(delegate, None)

    async def _replicate_acl_tokens(self) -> None:
        delegate = token_delegate(
            self._acl_fetch("ACL/TokenReplicate"), lambda: self._state.acl_tokens()[1],
            lambda token: self._propose(ACLTokenBatchSet((token,))),
            lambda accessor: self._propose(ACLTokenDelete(accessor)),
        )
        await self._run_replicator(delegate, None)

    async def _run_replicator(
        self, delegate: Delegate[Any], on_fetch: Callable[[Exception | None], None] | None, apply_batch: int = 1,
    ) -> None:
        cfg = self.config
        replicator: Replicator[Any] = Replicator(
            delegate,
            rate=cfg.replication_rate,
            burst=cfg.replication_burst,
            apply_limit=cfg.replication_apply_limit,
            apply_batch=apply_batch,
            on_fetch=on_fetch,
            on_round=self.replication_round,
        )
        self.statuses[delegate.name] = replicator.status
        await replicator.run()

    # ---- observability -------------------------------------------------------------------------

    def live_metrics(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        for status in self.statuses.values():
            yield gauge("meshfed_replication_lag_seconds", "Seconds since replication was last known in sync",
                        status.lag_seconds(now) if status.running else 0.0, {"type": status.name})
            yield gauge("meshfed_replication_consecutive_failures", "Failed replication rounds in a row",
                        status.consecutive_failures, {"type": status.name})

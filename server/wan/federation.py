"""WAN federation for one server: gateway locator, cross-DC dialer, replication and pruning.

Built by the agent. What runs where:
- every server: the locator follows local federation states and re-resolves `primary_gateways`;
  cross-DC RPCs go through `WanDialer` (installed as the router's remote hook);
- the leader of a secondary: federation-state replication from the primary, feeding the
  locator's replication signal;
- the leader of the primary: pruning of records not refreshed within `federation_state_ttl`.
Both leader loops are started and cancelled by `LeaderRoutines`; on step-down the locator goes
back to trusting local gateways and the replication gauges are zeroed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from meshfed.fsm import ConfigEntryDelete, ConfigEntrySet, FederationStateDelete, FederationStateUpsert
from meshfed.fsm.config_entries import content_hash
from meshfed.fsm.records import ConfigEntry, FederationState, federation_state_from_wire
from meshfed.fsm.state import StateStore
from meshfed.replication.config_entries import ConfigEntryDelegate
from meshfed.replication.federation_states import FederationStateDelegate
from meshfed.replication.replicator import ReplicationStatus, Replicator
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.header import RequestHeader
from meshfed.server.config.loader import Config
from meshfed.server.endpoints.config_entry import ConfigEntryEndpoint, entry_json
from meshfed.server.endpoints.federation_state import FederationStateEndpoint
from meshfed.server.endpoints.writes import propose
from meshfed.server.leader.pruning import prune_federation_states
from meshfed.server.leader.routines import LeaderRoutines
from meshfed.server.metrics import Metrics, gauge
from meshfed.server.raft import RaftNode
from meshfed.server.requests.router import Router
from meshfed.server.requests.watch import WatchHub
from meshfed.server.wan.dialer import WanDialer
from meshfed.server.wan.gateway_locator import GatewayLocator

REPLICATED = ("federation_state", "config_entry")


class Federation:
    def __init__(
        self,
        config: Config,
        *,
        state: StateStore,
        raft: RaftNode,
        watches: WatchHub,
        pool: ConnectionPool,
        router: Router,
        endpoint: FederationStateEndpoint,
        config_entries: ConfigEntryEndpoint,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self._state = state
        self._raft = raft
        self._endpoint = endpoint
        self._config_entries = config_entries
        self._metrics = metrics
        self.enabled = config.connect.enable_mesh_gateway_wan_federation
        self.locator = GatewayLocator(
            datacenter=config.datacenter,
            primary_datacenter=config.primary,
            state=state,
            watches=watches,
            configured_fallbacks=config.primary_gateways,
            fallback_interval=config.primary_gateways_interval,
            fallback_disabled=config.disable_primary_gateway_fallback,
            on_pick=lambda dc, mode: metrics.locator_picks.labels(dc, mode).inc(),
        )
        if self.enabled:
            router.remote = WanDialer(
                self.locator, pool, config.domain,
                on_call=lambda dc, outcome: metrics.cross_dc_calls.labels(dc, outcome).inc(),
            ).call
        self.replication: dict[str, ReplicationStatus] = {name: ReplicationStatus(name) for name in REPLICATED}
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled:
            return
        self._tasks.append(asyncio.create_task(self.locator.run_refresh(), name="gateway-locator"))
        self._tasks.append(asyncio.create_task(self.locator.run_fallback_resolver(), name="primary-gateways"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def add_leader_routines(self, routines: LeaderRoutines) -> None:
        cfg = self.config
        if cfg.is_primary:
            routines.add(
                "federation-state-pruning",
                lambda: prune_federation_states(cfg.datacenter, self._state, self._raft, cfg.federation_state_ttl, time.time),
            )
        else:
            routines.add("federation-state-replication", self._replicate_federation_states)
            routines.add("config-entry-replication", self._replicate_config_entries)

    def on_step_down(self) -> None:
        self.locator.reset_replication_signal()
        for status in self.replication.values():
            status.running = False
            status.in_sync = False

    # ---- federation-state replication (secondary leader) -------------------------------------------

    async def _fetch_remote(self, min_index: int) -> tuple[int, list[FederationState]]:
        header = RequestHeader(datacenter=self.config.primary, allow_stale=True, min_query_index=min_index)
        meta, states = await self._endpoint.list(header, {})
        return meta.index, [federation_state_from_wire(s) for s in states]

    async def _upsert_local(self, state: FederationState) -> None:
        await propose(self._raft, uuid.uuid4().hex, FederationStateUpsert(state))

    async def _delete_local(self, datacenter: str) -> None:
        await propose(self._raft, uuid.uuid4().hex, FederationStateDelete(datacenter))

    async def _replicate_federation_states(self) -> None:
        delegate = FederationStateDelegate(
            fetch=self._fetch_remote,
            local=lambda: self._state.federation_state_list()[1],
            upsert=self._upsert_local,
            delete=self._delete_local,
        )
        try:
            # Only federation-state fetches feed the locator's replication signal (reference §7.3).
            await self._run_replicator(
                delegate, lambda error: self.locator.set_replication_result(error, from_replication=True)
            )
        finally:
            self.locator.reset_replication_signal()

    # ---- config-entry replication (secondary leader) ------------------------------------------------

    async def _fetch_config_entries(self, min_index: int) -> tuple[int, list[dict[str, Any]]]:
        header = RequestHeader(datacenter=self.config.primary, allow_stale=True, min_query_index=min_index)
        meta, entries = await self._config_entries.list_all(header, {})
        return meta.index, entries

    async def _upsert_config_entry(self, body: dict[str, Any]) -> None:
        record = ConfigEntry(kind=body["Kind"], name=body["Name"], body=body, hash=content_hash(body))
        await propose(self._raft, uuid.uuid4().hex, ConfigEntrySet(record))

    async def _delete_config_entry(self, kind: str, name: str) -> None:
        await propose(self._raft, uuid.uuid4().hex, ConfigEntryDelete(kind, name))

    async def _replicate_config_entries(self) -> None:
        delegate = ConfigEntryDelegate(
            fetch=self._fetch_config_entries,
            local=lambda: [entry_json(r) for r in self._state.config_entry_list()[1]],
            upsert=self._upsert_config_entry,
            delete=self._delete_config_entry,
            hash_of=content_hash,
        )
        await self._run_replicator(delegate, None)

    async def _run_replicator(self, delegate: Any, on_fetch: Any) -> None:
        cfg = self.config
        replicator: Replicator[Any] = Replicator(
            delegate,
            rate=cfg.replication_rate,
            burst=cfg.replication_burst,
            apply_limit=cfg.replication_apply_limit,
            on_fetch=on_fetch,
            on_round=self.replication_round,
        )
        self.replication[delegate.name] = replicator.status
        await replicator.run()

    def replication_round(self, status: ReplicationStatus) -> None:
        self._metrics.replication_status[status.name].set(1 if status.in_sync else 0)
        self._metrics.replication_index[status.name].set(status.last_remote_index)

    # ---- observability ----------------------------------------------------------------------------

    def live_metrics(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        for status in self.replication.values():
            yield gauge("meshfed_replication_lag_seconds", "Seconds since replication was last known in sync",
                        status.lag_seconds(now) if status.running else 0.0, {"type": status.name})
            yield gauge("meshfed_replication_consecutive_failures", "Failed replication rounds in a row",
                        status.consecutive_failures, {"type": status.name})
        if not self.enabled:
            return
        view = self.locator.view()
        for name, addresses in (("local", view.local_gateways), ("primary", view.primary_gateways),
                                ("fallback", view.fallback_gateways)):
            yield gauge("meshfed_gateway_locator_gateways", "Eligible gateway addresses known to the locator",
                        len(addresses), {"list": name})
        yield gauge("meshfed_gateway_locator_dial_primary_directly", "1 when the primary is dialed directly (fallback mode)",
                    1.0 if view.mode == "direct" else 0.0)
        yield gauge("meshfed_gateway_locator_replication_failures", "Consecutive federation-state fetch failures seen",
                    self.locator.signal.consecutive_failures)

"""WAN federation for one server: gateway locator, cross-DC dialer, pruning, debug routes.

Built by the agent. What runs where:
- every server: the locator follows local federation states and re-resolves `primary_gateways`;
  cross-DC RPCs go through `WanDialer` (installed as the router's remote hook);
- the leader of a secondary: replication from the primary (`SecondaryReplication`, in
  server/wan/replication.py), whose federation-state fetches feed the locator's replication signal;
- the leader of the primary: pruning of records not refreshed within `federation_state_ttl`.
Both leader loops are started and cancelled by `LeaderRoutines`; on step-down the locator goes
back to trusting local gateways and the replication gauges are zeroed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from meshfed.fsm.state import StateStore
from meshfed.replication.loop import ReplicationStatus
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.config.loader import Config
from meshfed.server.endpoints.acl import ACLEndpoint
from meshfed.server.endpoints.config_entry import ConfigEntryEndpoint
from meshfed.server.endpoints.federation_state import FederationStateEndpoint
from meshfed.server.leader.log_support import LogCommandSupport
from meshfed.server.leader.pruning import prune_federation_states
from meshfed.server.leader.routines import LeaderRoutines
from meshfed.server.metrics import Metrics, gauge
from meshfed.server.raft import RaftNode
from meshfed.server.requests.router import Router
from meshfed.server.requests.watch import WatchHub
from meshfed.server.wan.dialer import WanDialer
from meshfed.server.wan.federation_check import FederationCheck
from meshfed.server.wan.gateway_locator import GatewayLocator
from meshfed.server.wan.replication import SecondaryReplication


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
        acl: ACLEndpoint | None = None,
    ) -> None:
        self.config = config
        self._state = state
        self._raft = raft
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
        server_name = f"server.{config.datacenter}.{config.domain.rstrip('.')}" if pool.tls else ""

        def other_servers() -> list[str]:
            _, servers = state.servers()
            return [s.rpc_address for s in servers
                    if s.datacenter.lower() == config.datacenter.lower() and s.rpc_address != config.rpc_address]

        async def call_server(address: str, method: str, header: RequestHeader, body: Any,
                              timeout: float) -> tuple[QueryMeta, Any]:
            return await pool.call(address, method, header, body, timeout=timeout, server_name=server_name)

        self.replication = SecondaryReplication(
            config, state=state, raft=raft, locator=self.locator, endpoint=endpoint,
            config_entries=config_entries, metrics=metrics, acl=acl,
            log_support=LogCommandSupport(members=other_servers, call=call_server),
        )
        self.check = FederationCheck(config, state=state, locator=self.locator, router=router,
                                     is_leader=raft.is_leader, replication=self.replication)
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle ---------------------------------------------------------------------------------

    @property
    def replication_statuses(self) -> dict[str, ReplicationStatus]:
        """Each replicated type's status, as /v1/internal/replication reports it."""
        return self.replication.statuses

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
        self.replication.add_leader_routines(routines)

    def on_step_down(self) -> None:
        self.locator.reset_replication_signal()
        self.replication.on_step_down()

    # ---- observability ----------------------------------------------------------------------------

    def live_metrics(self) -> Iterator[GaugeMetricFamily]:
        yield from self.replication.live_metrics()
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

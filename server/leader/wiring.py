"""Which routines a server runs while it leads its datacenter, built from its configuration
(server/agent.py wires the parts; server/leader/routines.py starts them on election and cancels
them on step-down). Each routine is a factory, so every term starts with fresh state."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from meshfed.fsm.state import StateStore
from meshfed.replication.anti_entropy import FederationStateAntiEntropy
from meshfed.server.ca.primary import bootstrap_primary_ca
from meshfed.server.ca.secondary import SecondaryCA
from meshfed.server.config import Config
from meshfed.server.leader.acl_expiry import reap_expired_tokens
from meshfed.server.leader.acl_init import run_initial_management
from meshfed.server.leader.anti_entropy import CatalogGatewaySource, PrimaryStateSink
from meshfed.server.leader.autopilot import clean_up_dead_servers
from meshfed.server.leader.routines import LeaderRoutines
from meshfed.server.leader.ttl import reap_ttl_checks
from meshfed.server.metrics import Metrics


def add_leader_routines(routines: LeaderRoutines, cfg: Config, state: StateStore, raft: Any, *, watches: Any,
                        federation: Any, federation_wan: Any, connect_ca: Any, peering: Any, metrics: Metrics) -> None:
    def anti_entropy_outcome(outcome: str) -> None:
        metrics.anti_entropy_syncs.labels(outcome).inc()
        if outcome == "synced":
            metrics.anti_entropy_last_sync.set_to_current_time()

    def anti_entropy() -> Awaitable[None]:
        # Every DC keeps its own federation state, with or without WAN federation
        # (reference §6.2). A fresh loop per leadership term: no debounce or failure count
        # carried over from an earlier term.
        return FederationStateAntiEntropy(
            cfg.datacenter,
            CatalogGatewaySource(cfg.datacenter, state, watches),
            PrimaryStateSink(cfg.primary, federation, token=cfg.acl.tokens.replication),
            sync_interval=cfg.federation_state_anti_entropy_sync_interval,
            refresh_interval=cfg.federation_state_refresh_interval,
            on_outcome=anti_entropy_outcome,
        ).run()

    routines.add("federation-state-anti-entropy", anti_entropy)
    federation_wan.add_leader_routines(routines)
    # The Connect CA (connect-data §C): bootstrapped by the primary's leader, an intermediate
    # signed by the primary for each secondary's leader.
    if cfg.is_primary:
        routines.add("connect-ca-bootstrap", lambda: bootstrap_primary_ca(state, raft))
    else:
        handlers = connect_ca.handlers()
        secondary_ca = SecondaryCA(
            datacenter=cfg.datacenter, primary_datacenter=cfg.primary, state=state, raft=raft,
            call=lambda method, header, body: handlers[method](header, body),
            on_round=federation_wan.replication.replication_round,
            token=cfg.acl.tokens.replication,
        )
        federation_wan.replication.track(secondary_ca.status)
        routines.add("connect-ca-secondary", secondary_ca.run)
    routines.add("peering-streams", peering.stream_routine())
    routines.add("autopilot-dead-server-cleanup", lambda: clean_up_dead_servers(state, raft))
    routines.add(
        "ttl-checks", lambda: reap_ttl_checks(state, raft, on_expired=metrics.ttl_expired.inc)
    )
    if cfg.acl.enabled:
        routines.add("acl-token-reaping", lambda: reap_expired_tokens(state, raft, primary=cfg.is_primary))
        if cfg.is_primary and cfg.acl.tokens.initial_management:
            secret = cfg.acl.tokens.initial_management
            routines.add("acl-initial-management", lambda: run_initial_management(secret, state, raft))

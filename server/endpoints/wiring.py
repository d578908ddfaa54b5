"""This server's RPC endpoints, built from its configuration on the shared state, Raft node, router
and blocking-query runner (server/agent.py wires the parts; server/leader/wiring.py and
server/peering/wiring.py do the same for the leader's routines and for peering).

Each endpoint takes only what its Consul endpoint group needs; the agent keeps the bundle because
the HTTP API, the WAN federation, the leader's routines and leaving the datacenter use some of them
directly, and the gRPC server serves all of their handlers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from meshfed.fsm.intentions import default_allows as intention_default_allows
from meshfed.fsm.state import StateStore
from meshfed.rpc.service import Handler
from meshfed.server.config import Config
from meshfed.server.endpoints.acl import ACLEndpoint
from meshfed.server.endpoints.agent_services import AgentServices
from meshfed.server.endpoints.autopilot import AutopilotEndpoint
from meshfed.server.endpoints.catalog import CatalogEndpoint
from meshfed.server.endpoints.config_entry import ConfigEntryEndpoint
from meshfed.server.endpoints.connect_ca import ConnectCAEndpoint
from meshfed.server.endpoints.federation_state import FederationStateEndpoint
from meshfed.server.endpoints.intention import IntentionEndpoint
from meshfed.server.endpoints.operator_raft import OperatorRaftEndpoint
from meshfed.server.endpoints.status import StatusEndpoint
from meshfed.server.raft import RaftNode
from meshfed.server.requests.blocking import QueryRunner
from meshfed.server.requests.router import Router


@dataclass(frozen=True)
class Endpoints:
    federation: FederationStateEndpoint
    config_entries: ConfigEntryEndpoint
    intentions: IntentionEndpoint
    connect_ca: ConnectCAEndpoint
    acl: ACLEndpoint
    catalog: CatalogEndpoint
    status: StatusEndpoint
    operator_raft: OperatorRaftEndpoint
    autopilot: AutopilotEndpoint
    agent_services: AgentServices

    def handlers(self) -> dict[str, Handler]:
        """Every endpoint's gRPC methods (each group has its own method names)."""
        return {
            **self.federation.handlers(), **self.catalog.handlers(), **self.status.handlers(),
            **self.config_entries.handlers(), **self.intentions.handlers(), **self.connect_ca.handlers(),
            **self.acl.handlers(), **self.agent_services.handlers(), **self.operator_raft.handlers(),
            **self.autopilot.handlers(),
        }


def build_endpoints(cfg: Config, *, state: StateStore, raft: RaftNode, router: Router, queries: QueryRunner,
                    observe_federation_state: Callable[[str, float], None]) -> Endpoints:
    return Endpoints(
        federation=FederationStateEndpoint(
            primary_datacenter=cfg.primary, state=state, raft=raft, router=router, queries=queries,
            observe=observe_federation_state,
            # MESHFED_FEDERATION_DELTA=0: followers forward the whole list again (benchmark baseline).
            datacenter=cfg.datacenter if os.environ.get("MESHFED_FEDERATION_DELTA", "1") != "0" else "",
        ),
        config_entries=ConfigEntryEndpoint(
            datacenter=cfg.datacenter, primary_datacenter=cfg.primary, state=state, raft=raft, router=router,
            queries=queries,
        ),
        intentions=IntentionEndpoint(
            primary_datacenter=cfg.primary, state=state, raft=raft, router=router, queries=queries,
            default_allow=intention_default_allows(cfg.acl.enabled, cfg.acl.default_policy),
        ),
        connect_ca=ConnectCAEndpoint(
            primary_datacenter=cfg.primary, datacenter=cfg.datacenter, state=state, raft=raft, router=router,
            queries=queries,
        ),
        acl=ACLEndpoint(datacenter=cfg.datacenter, primary_datacenter=cfg.primary, state=state, raft=raft,
                        router=router, queries=queries, data_dir=cfg.data_dir or None,
                        min_expiration_ttl=cfg.acl.token_min_expiration_ttl,
                        max_expiration_ttl=cfg.acl.token_max_expiration_ttl),
        catalog=CatalogEndpoint(state=state, raft=raft, router=router, queries=queries),
        status=StatusEndpoint(datacenter=cfg.datacenter, state=state, raft=raft, queries=queries, router=router),
        operator_raft=OperatorRaftEndpoint(state=state, raft=raft, router=router, queries=queries),
        autopilot=AutopilotEndpoint(state=state, raft=raft, router=router, queries=queries),
        agent_services=AgentServices(node=cfg.node_name, address=cfg.advertise, datacenter=cfg.datacenter,
                                     state=state, raft=raft, router=router, queries=queries),
    )

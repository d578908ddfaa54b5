"""What an HTTP handler reaches: the `Api` the agent builds once, and the helpers route modules
share to get at it, at the request body and at required query parameters.

It sits apart from `app.py` so that route modules import it and `app.py` imports the route modules,
one way: the routes need the `Api`, the application needs the routes, neither needs the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from meshfed.fsm.state import StateStore
from meshfed.replication.loop import ReplicationStatus
from meshfed.server.acl.resolver import ACLResolver
from meshfed.server.ca.leaf_cache import LeafCache
from meshfed.server.config.loader import Config
from meshfed.server.endpoints.acl import ACLEndpoint
from meshfed.server.endpoints.agent_services import AgentServices
from meshfed.server.endpoints.autopilot import AutopilotEndpoint
from meshfed.server.endpoints.catalog import CatalogEndpoint
from meshfed.server.endpoints.config_entry import ConfigEntryEndpoint
from meshfed.server.endpoints.connect_ca import ConnectCAEndpoint
from meshfed.server.endpoints.federation_state import FederationStateEndpoint
from meshfed.server.endpoints.intention import IntentionEndpoint
from meshfed.server.endpoints.operator_raft import OperatorRaftEndpoint
from meshfed.server.endpoints.ports import Queries
from meshfed.server.endpoints.snapshot import SnapshotEndpoint
from meshfed.server.endpoints.status import StatusEndpoint
from meshfed.server.http.json_guard import BodyError, parse_json_body
from meshfed.server.http.params import BadRequest
from meshfed.server.http.request_memo import once_per_request
from meshfed.server.log_stream import LogHub
from meshfed.server.metrics import Metrics
from meshfed.server.peering.endpoint import PeeringEndpoint
from meshfed.server.reload import Reloader
from meshfed.server.wan.federation_check import FederationCheck
from meshfed.server.wan.gateway_locator import GatewayLocator


class WanView(Protocol):
    """What /v1/internal/gateway-locator and /v1/internal/replication read from WAN federation."""

    @property
    def enabled(self) -> bool: ...

    @property
    def config(self) -> Config: ...

    @property
    def locator(self) -> GatewayLocator: ...

    @property
    def replication_statuses(self) -> Mapping[str, ReplicationStatus]: ...

    @property
    def check(self) -> FederationCheck: ...


@dataclass
class Api:
    """What the HTTP layer needs from the server; built once by the agent."""

    datacenter: str
    state: StateStore
    queries: Queries
    federation: FederationStateEndpoint
    catalog: CatalogEndpoint
    status: StatusEndpoint
    config_entries: ConfigEntryEndpoint
    intentions: IntentionEndpoint
    connect_ca: ConnectCAEndpoint
    metrics: Metrics
    wan: WanView
    prometheus_enabled: bool = True
    acl: ACLEndpoint | None = None  # None while ACLs are disabled: /v1/acl/* answers 401
    acl_resolver: ACLResolver | None = None  # shared with the RPC check: one token cache per server
    agent_services: AgentServices | None = None  # this server's own node, as its agent
    leaves: LeafCache | None = None  # leaf certificates this server hands out (keys stay in its memory)
    snapshots: SnapshotEndpoint | None = None  # None only in HTTP tests that build an Api by hand
    peering: PeeringEndpoint | None = None
    reloader: Reloader | None = None  # PUT /v1/agent/reload (None: the server was not started by the CLI)
    logs: LogHub | None = None  # GET /v1/agent/monitor
    operator_raft: OperatorRaftEndpoint | None = None  # live Raft membership (None in hand-built test Apis)
    autopilot: AutopilotEndpoint | None = None  # /v1/operator/autopilot/configuration
    leave: Callable[[str], Awaitable[None]] | None = None  # PUT /v1/agent/leave: leave the Raft configuration, stop


API_KEY: web.AppKey[Api] = web.AppKey("meshfed_api", Api)


def api_of(request: web.Request) -> Api:
    return request.app[API_KEY]


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; an empty body is None. Bad JSON is a 400, not a traceback.
    Parsed once per request (the ACL check and the handler both read it)."""
    raw = await request.read()
    try:
        return once_per_request(request, "json_body", lambda: parse_json_body(raw))
    except BodyError as exc:
        raise BadRequest(str(exc)) from None


def required_query(request: web.Request, name: str) -> str:
    """A query parameter the route cannot do without; missing or empty is a 400 naming it."""
    value = request.query.get(name, "")
    if not value:
        raise BadRequest(f"required query parameter '{name}' not set")
    return value

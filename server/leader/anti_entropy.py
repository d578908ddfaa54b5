"""Server-side adapters for replication.anti_entropy: the local catalog view and the write path.

The sink always goes through `FederationState/Apply` with the routing DC set to the primary: in
the primary that is a local Raft write on this leader; in a secondary it crosses to the primary
through the gateways. One path, so both behave the same.
"""

from __future__ import annotations

import uuid

from meshfed.fsm.records import KIND_MESH_GATEWAY, CheckServiceNode, FederationState, to_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.header import RequestHeader
from meshfed.server.endpoints.federation_state import FederationStateEndpoint
from meshfed.server.requests.watch import WatchHub

WATCHED_TABLES = ("federation_states", "nodes", "services", "checks")


class CatalogGatewaySource:
    def __init__(self, datacenter: str, state: StateStore, watches: WatchHub) -> None:
        self._datacenter = datacenter
        self._state = state
        self._watches = watches

    def view(self) -> tuple[int, FederationState | None, list[CheckServiceNode]]:
        _, own = self._state.federation_state_get(self._datacenter)
        _, gateways = self._state.check_service_nodes_by_kind(KIND_MESH_GATEWAY)
        return self._state.index(*WATCHED_TABLES), own, gateways

    async def wait_change(self, index: int, timeout: float) -> None:
        futures = self._watches.futures(WATCHED_TABLES)
        if self._state.index(*WATCHED_TABLES) > index:
            return
        await self._watches.wait_any(futures, timeout)


class PrimaryStateSink:
    """`token` is `acl.tokens.replication`: a secondary's write lands in the primary, which checks
    operator:write like any caller's (reference/acl.md §6.3)."""

    def __init__(self, primary_datacenter: str, endpoint: FederationStateEndpoint, token: str = "") -> None:
        self._primary = primary_datacenter
        self._endpoint = endpoint
        self._token = token

    async def upsert(self, state: FederationState) -> None:
        header = RequestHeader(datacenter=self._primary, request_id=uuid.uuid4().hex, token=self._token)
        await self._endpoint.apply(header, {"op": "upsert", "state": to_wire(state)})

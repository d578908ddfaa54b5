"""The agent's services (`/v1/agent/service/*`, `/v1/agent/services`): a meshfed server is also
the agent of its own node, so services registered through it are catalog entries on that node,
kept by Raft like every other record (they survive restarts and leader changes).

A parent and its sidecar are written together: `Catalog/RegisterMany` and `Catalog/DeregisterMany`
propose their commands as one batch (one Raft entry), validated as a whole first, so a client never
sees a sidecar without its service or the other way round.
"""

from __future__ import annotations

from typing import Any

from meshfed.fsm import CatalogDeregister, CatalogRegister, Command
from meshfed.fsm.records import HealthCheck, NodeService, check_from_wire, node_from_wire, service_from_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import check_shape, raise_for, request_id

HEALTH = ("nodes", "services", "checks")
CATCH_UP_WAIT = 10.0  # seconds a follower waits to apply an acknowledged write before answering


class AgentServices:
    def __init__(self, *, node: str, address: str, datacenter: str, state: StateStore, raft: Proposer,
                 router: RequestRouter, queries: Queries) -> None:
        self.node = node
        self.address = address
        self.datacenter = datacenter
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries

    def handlers(self) -> dict[str, Handler]:
        return {"Catalog/RegisterMany": self.register_many, "Catalog/DeregisterMany": self.deregister_many}

    # ---- reads (this server's own replica: an agent answers about itself) ------------------------

    def services(self) -> tuple[int, dict[str, NodeService]]:
        index, _, services = self._state.catalog_node(self.node)
        return index, {s.id: s for s in services}

    def service(self, service_id: str) -> NodeService | None:
        return self.services()[1].get(service_id)

    def checks(self) -> tuple[int, list[HealthCheck]]:
        return self._state.health_checks(node=self.node)

    def sidecar_ports(self, excluding: str) -> set[int]:
        return {s.port for s in self.services()[1].values() if s.id != excluding and s.port}

    # ---- writes ----------------------------------------------------------------------------------

    async def _propose_all(self, method: str, header: RequestHeader, body: Any, commands: list[Command]) -> tuple[QueryMeta, Any]:
        check_shape(commands)
        base = request_id(header.request_id)

        async def local() -> tuple[QueryMeta, Any]:
            results = await self._raft.apply([(f"{base}/{n}", c) for n, c in enumerate(commands)])
            for result in results:
                raise_for(result)
            return self._queries.meta(self._state.index(*HEALTH)), True

        meta, result = await self._router.serve(method, header, body, local, write=True)
        await self._caught_up(meta.index)
        return meta, result

    async def _caught_up(self, index: int) -> None:
        """Read-your-writes for the agent's own view: when this server is a follower, the leader
        acknowledges the entry before this replica applies it, and the client's next
        `GET /v1/agent/service/<id>` (or the next sidecar port choice) reads this replica. Consul's
        agent keeps its services locally, so clients expect the write to be visible at once."""
        if self._state.index(*HEALTH) >= index:
            return
        header = RequestHeader(min_query_index=index - 1, max_query_time=CATCH_UP_WAIT, allow_stale=True)
        await self._queries.run(header, HEALTH, lambda: (self._state.index(*HEALTH), True))

    async def register_many(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"registrations": [{"node", "service", "checks"} as Catalog/Register takes]}."""
        rows = body.get("registrations") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows:
            raise invalid("registrations: expected a non-empty list")
        try:
            commands: list[Command] = [
                CatalogRegister(
                    node=node_from_wire(row["node"]),
                    service=service_from_wire(row["service"]) if row.get("service") else None,
                    checks=tuple(check_from_wire(c) for c in row.get("checks") or ()),
                )
                for row in rows
            ]
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise invalid(f"invalid request: {exc}") from None
        return await self._propose_all("Catalog/RegisterMany", header, body, commands)

    async def deregister_many(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"node", "service_ids": [...]}."""
        node = body.get("node") if isinstance(body, dict) else None
        ids = body.get("service_ids") if isinstance(body, dict) else None
        if not isinstance(node, str) or not node or not isinstance(ids, list) or not ids:
            raise invalid("node and service_ids are required")
        commands: list[Command] = [CatalogDeregister(node=node, service_id=str(i)) for i in ids]
        return await self._propose_all("Catalog/DeregisterMany", header, body, commands)

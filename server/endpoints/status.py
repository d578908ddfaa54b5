"""Status.* and Operator.RaftGetConfiguration: answered from this server's own view, as Consul's
/v1/status endpoints are (no forwarding, no ACL)."""

from __future__ import annotations

from typing import Any

from meshfed.fsm.records import to_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import LeaderView, Queries


class StatusEndpoint:
    def __init__(self, *, state: StateStore, raft: LeaderView, queries: Queries) -> None:
        self._state = state
        self._raft = raft
        self._queries = queries

    def handlers(self) -> dict[str, Handler]:
        return {
            "Status/Leader": self.leader,
            "Status/Peers": self.peers,
            "Status/RaftConfiguration": self.raft_configuration,
            "Status/Ping": self.ping,
        }

    def _meta(self) -> QueryMeta:
        return self._queries.meta(self._state.index("servers"))

    async def ping(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return self._meta(), True

    async def leader(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return self._meta(), self._raft.leader() or ""

    async def peers(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return self._meta(), sorted([self._raft.self_address, *self._raft.peers])

    async def raft_configuration(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """{"servers": [{"node", "raft_address", "leader", "voter", "server": wire|None}], "index"}."""
        index, servers = self._state.servers()
        by_address = {s.raft_address: s for s in servers}
        leader = self._raft.leader()
        rows = []
        for address in sorted([self._raft.self_address, *self._raft.peers]):
            info = by_address.get(address)
            rows.append(
                {
                    "node": info.node if info else address,
                    "raft_address": address,
                    "leader": address == leader,
                    "voter": True,
                    "server": to_wire(info) if info else None,
                }
            )
        return self._queries.meta(index), {"servers": rows, "index": max(1, index)}

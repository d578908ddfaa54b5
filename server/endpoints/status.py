"""Status.* and Operator.RaftGetConfiguration, as Consul answers them (connect-data §F).

`Status/Leader` and `Status/Peers` are answered from the receiving server's own Raft view, never
forwarded to the leader; a `dc` other than ours goes to that datacenter, whose server answers
from its view (an unknown one is `No path to datacenter`). Addresses are the servers' RPC
addresses (ip:8300), as Consul's, not the Raft port. The Raft configuration is the leader's view
by default (forwarded like any read) and this server's own with `?stale`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from meshfed.fsm.log_entries import known_tags
from meshfed.fsm.records import to_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import LeaderView, Queries, RequestRouter


class StatusEndpoint:
    def __init__(self, *, datacenter: str, state: StateStore, raft: LeaderView, queries: Queries,
                 router: RequestRouter) -> None:
        self._datacenter = datacenter
        self._state = state
        self._raft = raft
        self._queries = queries
        self._router = router

    def handlers(self) -> dict[str, Handler]:
        return {
            "Status/Leader": self.leader,
            "Status/Peers": self.peers,
            "Status/RaftConfiguration": self.raft_configuration,
            "Status/Ping": self.ping,
            "Status/Time": self.time,
            "Status/LogCommands": self.log_commands,
        }

    def _meta(self) -> QueryMeta:
        return self._queries.meta(self._state.index("servers"))

    async def ping(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return self._meta(), True

    async def time(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """This server's wall clock, for `federation check`'s skew measurement (never forwarded)."""
        return self._meta(), time.time()

    async def log_commands(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """The log command tags this server can apply (never forwarded): before proposing a command
        an older version may lack, a leader asks every member (server/leader/log_support.py)."""
        return self._meta(), sorted(known_tags())

    async def _here_or_in(self, method: str, header: RequestHeader, body: Any,
                          local: Callable[[], Awaitable[tuple[QueryMeta, Any]]]) -> tuple[QueryMeta, Any]:
        """This server's own view, unless the request names another datacenter."""
        if header.datacenter and header.datacenter.lower() != self._datacenter.lower():
            return await self._router.serve(method, header, body, local, write=False)
        return await local()

    def _rpc_address(self, raft_address: str) -> str:
        """A Raft member's RPC address, from the record every server publishes; its Raft address
        until that record exists (a member that never started cannot be dialed anyway)."""
        _, servers = self._state.servers()
        for info in servers:
            if info.raft_address == raft_address:
                return info.rpc_address
        return raft_address

    async def leader(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            leader = self._raft.leader()
            return self._meta(), self._rpc_address(leader) if leader else ""

        return await self._here_or_in("Status/Leader", header, body, local)

    async def peers(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            return self._meta(), sorted(self._rpc_address(a) for a in [self._raft.self_address, *self._raft.peers])

        return await self._here_or_in("Status/Peers", header, body, local)

    def _raft_term(self) -> int:
        status = getattr(self._raft, "status", None)  # absent on the in-memory twin
        return int(status().term) if callable(status) else 0

    async def raft_configuration(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """{"servers": [{"node", "raft_address", "leader", "voter", "server": wire|None, "alive",
        "last_contact": seconds|None}], "index"}; liveness is the answering server's view, which is
        the leader's unless the caller asked for ?stale."""

        async def local() -> tuple[QueryMeta, Any]:
            index, servers = self._state.servers()
            by_address = {s.raft_address: s for s in servers}
            leader = self._raft.leader()
            health = self._raft.peer_health()
            rows = []
            for address in sorted([self._raft.self_address, *self._raft.peers]):
                info = by_address.get(address)
                peer = health.get(address)
                rows.append(
                    {
                        "node": info.node if info else address,
                        "raft_address": address,
                        "leader": address == leader,
                        "voter": True,
                        "server": to_wire(info) if info else None,
                        "alive": peer.alive if peer else False,
                        "last_contact": peer.last_contact if peer else None,
                        "last_index": peer.last_index if peer else None,
                    }
                )
            return self._queries.meta(index), {"servers": rows, "index": max(1, index), "term": self._raft_term()}

        return await self._router.serve("Status/RaftConfiguration", header, body, local, write=False)

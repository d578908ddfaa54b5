"""Operator.RaftTransferLeader and Operator.RaftRemovePeer: live Raft membership, as Consul's
`operator raft transfer-leader` and `operator raft remove-peer` (issue #12 item 1).

Both run on the leader (forwarded like writes). A server is named as Consul names it: `id` is the
server ID (meshfed's node name; a Raft address is accepted too) and `address` its RPC address
(ip:8300; a Raft address is accepted too). The quorum-safety rules and everything PySyncObj does
live in the Raft adapter (server/raft/membership.py); this file maps names and refusals.

Removing the leader itself: leadership is transferred first, then the call is routed again, so
the new leader removes the old one (a Raft leader cannot remove itself in PySyncObj).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import Queries, RequestRouter
from meshfed.server.raft.types import MembershipError


class MembershipOps(Protocol):
    """What these calls need of the Raft node (RaftNode implements it)."""

    @property
    def self_address(self) -> str: ...

    def members(self) -> Sequence[str]: ...

    def is_leader(self) -> bool: ...

    async def remove_server(self, address: str, timeout: float = ...) -> None: ...

    async def transfer_leadership(self, target: str | None = ..., timeout: float = ...) -> str: ...


def resolve_member(members: Sequence[str], servers: Sequence[Any], *, server_id: str = "", address: str = "") -> str:
    """The Raft address of the member named by `server_id` (node name or Raft address) or
    `address` (RPC or Raft address). Raises MembershipError naming what was not found."""
    wanted = server_id or address
    if not wanted:
        raise MembershipError("either id or address is required")
    for info in servers:
        names = (info.node.lower(), info.raft_address) if server_id else (info.rpc_address, info.raft_address)
        if (wanted.lower() if server_id else wanted) in names and info.raft_address in members:
            return str(info.raft_address)
    if wanted in members:
        return wanted
    kind = "id" if server_id else "address"
    raise MembershipError(f"{kind} {wanted!r} was not found in the Raft configuration")


class OperatorRaftEndpoint:
    def __init__(self, *, state: StateStore, raft: MembershipOps, router: RequestRouter, queries: Queries) -> None:
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries

    def handlers(self) -> dict[str, Handler]:
        return {
            "Operator/RaftTransferLeader": self.transfer_leader,
            "Operator/RaftRemovePeer": self.remove_peer,
        }

    def _resolve(self, body: Any) -> str:
        body = body if isinstance(body, dict) else {}
        _, servers = self._state.servers()
        return resolve_member(self._raft.members(), servers, server_id=str(body.get("id") or ""),
                              address=str(body.get("address") or ""))

    async def transfer_leader(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """Body {"id": optional}: hand leadership to that server, or to the most caught-up one."""

        async def local() -> tuple[QueryMeta, Any]:
            try:
                target = self._resolve(body) if isinstance(body, dict) and body.get("id") else None
                leader = await self._raft.transfer_leadership(target)
            except MembershipError as exc:
                raise invalid(f"leadership transfer refused: {exc}") from None
            return self._queries.meta(0), {"success": True, "leader": leader}

        return await self._router.serve("Operator/RaftTransferLeader", header, body, local, write=True)

    async def remove_peer(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """Body {"id"} or {"address"}: remove that server from the Raft configuration, unless the
        live voters left would not be a majority (refused with the reason, HTTP 400)."""

        async def local() -> tuple[QueryMeta, Any]:
            try:
                target = self._resolve(body)
                if target == self._raft.self_address:
                    await self._raft.transfer_leadership(None)
                    return None  # routed again below, to the new leader
                await self._raft.remove_server(target)
            except MembershipError as exc:
                raise invalid(f"remove-peer refused: {exc}") from None
            return self._queries.meta(0), {"removed": target}

        answer = await self._router.serve("Operator/RaftRemovePeer", header, body, local, write=True)
        if answer is None:
            answer = await self._router.serve("Operator/RaftRemovePeer", header, body, local, write=True)
        return answer  # type: ignore[return-value]

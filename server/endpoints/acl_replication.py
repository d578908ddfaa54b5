"""The primary's side of ACL replication, the secondary's remote token resolve, and the status.

Three internal reads feed the secondary leader's replicators (reference/acl.md §6.3):
`ACL/PolicyReplicate`, `ACL/RoleReplicate` and `ACL/TokenReplicate`. Each is a blocking list of
one table in wire form. Only servers may call them: the RPC service refuses a caller without a
server certificate of a known datacenter (`server/acl/peers.py`), and the permission table asks
`acl:read` of the token. Token secrets travel only to a token that also holds `acl:write`; any
other gets them redacted, and the secondary's delegate turns that into Consul's "failed to
retrieve unredacted tokens" (as Consul's primary redacts and its secondary refuses).

`ACL/ReplicationStatus` is answered by the DC's leader, which runs the replicators; a follower
forwards it there, so every server of a DC shows the same status (Consul's ACL.ReplicationStatus).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import grpc

from meshfed.fsm.acl.records import ACLToken, policy_from_wire, role_from_wire, token_from_wire
from meshfed.fsm.records import to_wire
from meshfed.replication.acl_delegates import HIDDEN_SECRET
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.endpoints import acl_shapes as shapes
from meshfed.server.endpoints.acl_base import ACLBase

REPLICATE_METHODS = ("ACL/PolicyReplicate", "ACL/RoleReplicate", "ACL/TokenReplicate")
ERR_ACL_NOT_FOUND = "ACL not found"


def disabled_status() -> dict[str, Any]:
    """What a primary (or a secondary whose leader runs no replication) reports."""
    return {
        "Enabled": False, "Running": False, "SourceDatacenter": "", "ReplicationType": "",
        "ReplicatedIndex": 0, "ReplicatedRoleIndex": 0, "ReplicatedTokenIndex": 0,
        "LastSuccess": "0001-01-01T00:00:00Z", "LastError": "0001-01-01T00:00:00Z", "LastErrorMessage": "",
    }


class ReplicationHandlers(ACLBase):
    # Set by the agent: may this token see secrets (acl:write)? and the leader's status JSON.
    reveal_secrets_to: Callable[[str], bool] = staticmethod(lambda token: False)  # type: ignore[assignment]
    replication_status: Callable[[], dict[str, Any]] = staticmethod(disabled_status)  # type: ignore[assignment]

    def replication_handlers(self) -> dict[str, Any]:
        return {
            "ACL/PolicyReplicate": self.policy_replicate,
            "ACL/RoleReplicate": self.role_replicate,
            "ACL/TokenReplicate": self.token_replicate,
            "ACL/ReplicationStatus": self.replication_status_read,
        }

    async def _replicate(self, method: str, table: str, header: RequestHeader,
                         rows: Callable[[], list[Any]]) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            meta, found = await self._queries.run(header, (table,), lambda: (self._state.index(table), rows()))
            return meta, [to_wire(record) for record in found]

        return await self._router.serve(method, header, {}, local, write=False)

    async def policy_replicate(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return await self._replicate("ACL/PolicyReplicate", "acl_policies", header,
                                     lambda: self._state.acl_policies()[1])

    async def role_replicate(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        # Links by ID only: the secondary fills names in from its own (replicated) policies.
        return await self._replicate("ACL/RoleReplicate", "acl_roles", header,
                                     lambda: self._state.acl_roles()[1])

    async def token_replicate(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """Global, unexpired tokens; secrets only for a token with acl:write."""
        reveal = self.reveal_secrets_to(header.token)

        def rows() -> list[ACLToken]:
            tokens = [t for t in self._state.acl_tokens()[1] if not t.local and self._live(t) is not None]
            return tokens if reveal else [dataclasses.replace(t, secret_id=HIDDEN_SECRET) for t in tokens]

        return await self._replicate("ACL/TokenReplicate", "acl_tokens", header, rows)

    async def replication_status_read(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            return self._meta(), self.replication_status()

        return await self._router.serve("ACL/ReplicationStatus", header, body, local, write=False)

    # ---- the secondary's calls to the primary ----------------------------------------------------

    async def fetch_replicated(self, method: str, header: RequestHeader) -> tuple[int, list[Any]]:
        """(remote index, records) of one of REPLICATE_METHODS, called with `header` aimed at the primary."""
        from_wire = {"ACL/PolicyReplicate": policy_from_wire, "ACL/RoleReplicate": role_from_wire,
                     "ACL/TokenReplicate": token_from_wire}[method]
        handler = {"ACL/PolicyReplicate": self.policy_replicate, "ACL/RoleReplicate": self.role_replicate,
                   "ACL/TokenReplicate": self.token_replicate}[method]
        meta, rows = await handler(header, {})
        return meta.index, [from_wire(row) for row in rows or ()]

    async def resolve_remote(self, secret: str) -> ACLToken | None:
        """The primary's token for `secret` (None: the primary says `ACL not found`).

        Raises:
            RPCError: anything else, notably UNAVAILABLE when the primary cannot be reached; the
                resolver then applies `down_policy`.
        """
        header = RequestHeader(datacenter=self._primary, token=secret, allow_stale=True)
        try:
            _, token = await self.token_self(header, {})
        except RPCError as exc:
            if exc.code == grpc.StatusCode.PERMISSION_DENIED and exc.message == ERR_ACL_NOT_FOUND:
                return None
            raise
        found = shapes.token_from_json(token)
        # A primary's local token is valid in the primary only (reference §6.3).
        return None if found.local else found

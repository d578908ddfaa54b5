"""ACL.Token*: create, update, clone, read, self, list and delete (reference/acl.md §3.2).

A global token (`Local=false`) is written in the primary; a local one where the request arrived.
Updates replace every link (omitting `Policies` clears them) but keep the SecretID, the
locality, the expiration and the CreateTime. Lists never show secrets: a body flag asking for
them would be honoured for any RPC caller, so replication has its own read that checks the token
(`acl_replication.py`); single reads show them, and enforcement redacts them where the caller
lacks acl:write.
"""

from __future__ import annotations

from typing import Any

import grpc

from meshfed.fsm import ACLTokenDelete, ACLTokenSet
from meshfed.fsm.acl.records import ANONYMOUS_TOKEN_ACCESSOR_ID, ACLToken
from meshfed.fsm.acl.store import ACL_TABLES
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.consul_formats.timestamps import format_rfc3339
from meshfed.rpc.errors import RPCError, invalid, not_found
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.endpoints import acl_shapes as shapes
from meshfed.server.endpoints.acl_base import ACLBase, new_id, object_body
from meshfed.server.endpoints.writes import propose

ERR_ACL_NOT_FOUND = "ACL not found"


class TokenHandlers(ACLBase):
    def _token_target(self, header: RequestHeader, local: bool) -> RequestHeader:
        return header if local else self._to_primary(header)

    def _decoded_token(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The state-free part of a token body: checked before any forwarding."""
        for legacy in ("Rules", "Type"):
            if lookup(raw, legacy) is not None:
                raise invalid(f"Token decoding failed: the legacy field {legacy} is not supported")
        local = lookup(raw, "Local")
        if local is not None and not isinstance(local, bool):
            raise invalid("Token decoding failed: Local must be a boolean")
        services, nodes = shapes.identities(raw, "Token")
        return {
            "accessor_id": shapes.text_field(raw, "AccessorID", "Token"),
            "secret_id": shapes.text_field(raw, "SecretID", "Token"),
            "description": shapes.text_field(raw, "Description", "Token"),
            "policy_refs": shapes.link_refs(raw, "Policies", "Token"),
            "role_refs": shapes.link_refs(raw, "Roles", "Token"),
            "service_identities": services,
            "node_identities": nodes,
            "local": local,
        }

    async def token_set(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"token": Consul JSON, "accessor": the URL's AccessorID on update} -> token JSON."""
        raw = shapes.as_object(object_body(body).get("token"), "Token")
        accessor = str(body.get("accessor") or "")
        given = self._decoded_token(raw)
        existing_here = self._state.acl_token_by_accessor(accessor)[1] if accessor else None
        local_flag = given["local"] if given["local"] is not None else bool(existing_here and existing_here.local)
        header = self._token_target(header, local_flag)

        async def local() -> tuple[QueryMeta, Any]:
            now = self._now()
            links = {"policies": self._policy_links(given["policy_refs"]), "roles": self._role_links(given["role_refs"])}
            common = {
                "description": given["description"], **links,
                "service_identities": given["service_identities"], "node_identities": given["node_identities"],
            }
            if accessor:
                existing = self._live(self._state.acl_token_by_accessor(accessor)[1])
                if existing is None:
                    raise invalid(f'Cannot find token "{accessor}"')
                if given["secret_id"] and given["secret_id"] != existing.secret_id:
                    raise invalid("Changing a tokens SecretID is not permitted")
                if given["local"] is not None and given["local"] != existing.local:
                    raise invalid(f"cannot toggle local mode of {accessor}")
                expiration = (self._expiration(raw, now, bounded=False)
                              if lookup(raw, "ExpirationTime", "ExpirationTTL") else None)
                if expiration is not None and expiration != existing.expiration_time:
                    raise invalid(f"Cannot change expiration time of {accessor}")
                token = ACLToken(
                    accessor_id=accessor, secret_id=existing.secret_id, local=existing.local,
                    expiration_time=existing.expiration_time, create_time=existing.create_time, **common,
                )
            else:
                token_accessor, secret = given["accessor_id"], given["secret_id"]
                if token_accessor:
                    self._check_new_id(token_accessor, "AccessorID")
                if secret:
                    self._check_new_id(secret, "SecretID")
                token = ACLToken(
                    accessor_id=token_accessor or new_id(), secret_id=secret or new_id(), local=bool(given["local"]),
                    expiration_time=self._expiration(raw, now),
                    create_time=format_rfc3339(now, microseconds=True), **common,
                )
            await propose(self._raft, header.request_id, ACLTokenSet(token))
            return self._meta(), self._token_reply(token.accessor_id)

        return await self._router.serve("ACL/TokenSet", header, body, local, write=True)

    async def token_clone(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"accessor", "description"} -> the new token: same links, new IDs."""
        accessor = str(object_body(body).get("accessor") or "")
        description = body.get("description")
        existing_here = self._state.acl_token_by_accessor(accessor)[1]
        header = self._token_target(header, bool(existing_here and existing_here.local))

        async def local() -> tuple[QueryMeta, Any]:
            existing = self._live(self._state.acl_token_by_accessor(accessor)[1])
            if existing is None:
                raise not_found("Cannot find token to clone")
            clone = ACLToken(
                accessor_id=new_id(), secret_id=new_id(),
                description=description if isinstance(description, str) else existing.description,
                policies=existing.policies, roles=existing.roles,
                service_identities=existing.service_identities, node_identities=existing.node_identities,
                local=existing.local, expiration_time=existing.expiration_time,
                create_time=format_rfc3339(self._now(), microseconds=True),
            )
            await propose(self._raft, header.request_id, ACLTokenSet(clone))
            return self._meta(), self._token_reply(clone.accessor_id)

        return await self._router.serve("ACL/TokenClone", header, body, local, write=True)

    async def token_read(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"accessor"} -> {"token": JSON or None}."""
        accessor = str(object_body(body).get("accessor") or "")

        def query() -> tuple[int, Any]:
            index, token = self._state.acl_token_by_accessor(accessor)
            return index, self._live(token)

        async def local() -> tuple[QueryMeta, Any]:
            meta, token = await self._queries.run(header, ACL_TABLES, query)
            return meta, {"token": None if token is None else shapes.token_json(token)}

        return await self._router.serve("ACL/TokenRead", header, body, local, write=False)

    async def token_self(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """The token whose secret the request carries; unknown -> 403 `ACL not found` (§3.1)."""

        def query() -> tuple[int, Any]:
            index, token = self._state.acl_token_by_secret(header.token)
            return index, self._live(token)

        async def local() -> tuple[QueryMeta, Any]:
            meta, token = await self._queries.run(header, ACL_TABLES, query)
            if token is None:
                raise RPCError(grpc.StatusCode.PERMISSION_DENIED, ERR_ACL_NOT_FOUND)
            return meta, shapes.token_json(token)

        return await self._router.serve("ACL/TokenSelf", header, body, local, write=False)

    async def token_list(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"policy", "role"} -> stubs sorted by AccessorID, secrets hidden."""
        body = body if isinstance(body, dict) else {}
        policy_id, role_id = body.get("policy") or None, body.get("role") or None

        def query() -> tuple[int, Any]:
            index, tokens = self._state.acl_tokens(policy_id=policy_id, role_id=role_id)
            return index, [token for token in tokens if self._live(token) is not None]

        async def local() -> tuple[QueryMeta, Any]:
            meta, tokens = await self._queries.run(header, ACL_TABLES, query)
            return meta, [shapes.token_json(token, hide_secret=True) for token in tokens]

        return await self._router.serve("ACL/TokenList", header, body, local, write=False)

    async def token_delete(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        accessor = str(object_body(body).get("accessor") or "")
        existing_here = self._state.acl_token_by_accessor(accessor)[1]
        header = self._token_target(header, bool(existing_here and existing_here.local))

        async def local() -> tuple[QueryMeta, Any]:
            if accessor == ANONYMOUS_TOKEN_ACCESSOR_ID:
                raise invalid("Delete operation not permitted on the anonymous token")
            existing = self._state.acl_token_by_accessor(accessor)[1]
            if existing is None:
                raise not_found("Cannot find token to delete")
            if header.token and existing.secret_id == header.token:
                raise invalid("Deletion of the request's authorization token is not permitted")
            await propose(self._raft, header.request_id, ACLTokenDelete(accessor))
            return self._meta(), True

        return await self._router.serve("ACL/TokenDelete", header, body, local, write=True)


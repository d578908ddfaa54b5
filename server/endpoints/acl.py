"""ACL.* (reference/acl.md §3): bootstrap, and policies, roles and tokens, read and written.

Writes of global objects (policies, roles, non-local tokens, bootstrap) are re-targeted to the
primary datacenter wherever they arrive, exactly as config entries are: the primary is the
authority and secondaries only replicate (§2 summary, §3.2). The router then takes the write to
that datacenter's leader, where `local()` resolves names against the leader's state and proposes.

Permissions are not checked here: the enforcement layer wraps these handlers (each route declares
its permission once). Failures use Consul's texts, with meshfed's one deliberate difference that
validation failures are 400, not 500. Expired tokens read as absent (the store reads no clock,
so the check is here, against this server's time).
"""

from __future__ import annotations

import os
from typing import Any

import grpc

from meshfed.fsm import ACLBootstrap, ACLPolicyDelete, ACLPolicySet, ACLRoleDelete, ACLRoleSet
from meshfed.fsm.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshfed.fsm.acl.apply import bootstrap_refusal
from meshfed.fsm.acl.records import ACLLink, ACLPolicy, ACLRole, ACLToken
from meshfed.fsm.acl.store import ACL_TABLES
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.consul_formats.timestamps import format_rfc3339
from meshfed.rpc.errors import RPCError, invalid, not_found
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints import acl_shapes as shapes
from meshfed.server.endpoints.acl_base import new_id, object_body, permission_denied
from meshfed.server.endpoints.acl_replication import ReplicationHandlers
from meshfed.server.endpoints.acl_tokens import TokenHandlers
from meshfed.server.endpoints.writes import propose

BOOTSTRAP_RESET_FILE = "acl-bootstrap-reset"
BOOTSTRAP_DESCRIPTION = "Bootstrap Token (Global Management)"


class ACLEndpoint(TokenHandlers, ReplicationHandlers):
    """Every ACL.* handler: bootstrap, policies and roles here, tokens in `TokenHandlers`, the
    replication reads and status in `ReplicationHandlers`."""

    def handlers(self) -> dict[str, Handler]:
        return {
            "ACL/Bootstrap": self.bootstrap,
            "ACL/PolicySet": self.policy_set,
            "ACL/PolicyRead": self.policy_read,
            "ACL/PolicyList": self.policy_list,
            "ACL/PolicyDelete": self.policy_delete,
            "ACL/RoleSet": self.role_set,
            "ACL/RoleRead": self.role_read,
            "ACL/RoleList": self.role_list,
            "ACL/RoleDelete": self.role_delete,
            "ACL/TokenSet": self.token_set,
            "ACL/TokenRead": self.token_read,
            "ACL/TokenSelf": self.token_self,
            "ACL/TokenClone": self.token_clone,
            "ACL/TokenDelete": self.token_delete,
            "ACL/TokenList": self.token_list,
            **self.replication_handlers(),
        }

    # ---- bootstrap ----------------------------------------------------------------------------

    def _take_reset_index(self) -> int | None:
        """The index in the reset file, which is removed once read (even if the write then fails)."""
        if not self._data_dir:
            return None
        path = os.path.join(self._data_dir, BOOTSTRAP_RESET_FILE)
        try:
            with open(path, encoding="utf-8") as reset_file:
                text = reset_file.read().strip()
        except OSError:
            return None
        try:
            os.remove(path)
        except OSError:
            pass
        try:
            return int(text)
        except ValueError:
            raise invalid(f"failed to parse {path}: {text!r:.40} is not an index") from None

    async def bootstrap(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """-> the bootstrap token's JSON plus the legacy `ID` (= SecretID) (§3.3)."""
        header = self._to_primary(header)
        secret = lookup(body, "BootstrapSecret") if isinstance(body, dict) else None

        async def local() -> tuple[QueryMeta, Any]:
            done = self._state.acl_bootstrap_state()[1]
            reset_index = 0
            if done["bootstrapped"]:
                reset_index = self._take_reset_index() or 0
                if not reset_index:
                    raise permission_denied(bootstrap_refusal(done["reset_index"]))
            token = ACLToken(
                accessor_id=new_id(), secret_id=str(secret) if secret else new_id(),
                description=BOOTSTRAP_DESCRIPTION, policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID),),
                create_time=format_rfc3339(self._now(), microseconds=True),
            )
            try:
                await propose(self._raft, header.request_id, ACLBootstrap(token, reset_index))
            except RPCError as exc:
                if exc.code == grpc.StatusCode.FAILED_PRECONDITION:  # lost a race with another bootstrap
                    raise permission_denied(exc.message) from None
                raise
            reply = self._token_reply(token.accessor_id)
            reply["ID"] = token.secret_id
            return self._meta(), reply

        return await self._router.serve("ACL/Bootstrap", header, body, local, write=True)

    # ---- policies -----------------------------------------------------------------------------

    async def policy_set(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"policy": Consul JSON, "id": the URL's ID on update, absent on create}."""
        raw = shapes.as_object(object_body(body).get("policy"), "Policy")
        url_id = body.get("id") or ""
        fields = {
            "name": shapes.text_field(raw, "Name", "Policy"),
            "description": shapes.text_field(raw, "Description", "Policy"),
            "rules": shapes.text_field(raw, "Rules", "Policy"),
            "datacenters": shapes.datacenters(raw, "Policy"),
        }
        header = self._to_primary(header)

        async def local() -> tuple[QueryMeta, Any]:
            policy_id = url_id or new_id()
            if url_id and self._state.acl_policy(url_id)[1] is None:
                raise invalid(f'Cannot find policy "{url_id}"')
            await propose(self._raft, header.request_id, ACLPolicySet(ACLPolicy(id=policy_id, **fields)))
            policy = self._state.acl_policy(policy_id)[1]
            assert policy is not None
            return self._meta(), shapes.policy_json(policy)

        return await self._router.serve("ACL/PolicySet", header, body, local, write=True)

    async def policy_read(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"id"} or {"name"} -> {"policy": JSON or None}."""
        body = object_body(body)

        def query() -> tuple[int, Any]:
            if body.get("name"):
                return self._state.acl_policy_by_name(str(body["name"]))
            return self._state.acl_policy(str(body.get("id") or ""))

        async def local() -> tuple[QueryMeta, Any]:
            meta, policy = await self._queries.run(header, ACL_TABLES, query)
            return meta, {"policy": None if policy is None else shapes.policy_json(policy)}

        return await self._router.serve("ACL/PolicyRead", header, body, local, write=False)

    async def policy_list(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            meta, policies = await self._queries.run(header, ACL_TABLES, self._state.acl_policies)
            return meta, [shapes.policy_json(p, stub=True) for p in policies]

        return await self._router.serve("ACL/PolicyList", header, body, local, write=False)

    async def policy_delete(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        policy_id = str(object_body(body).get("id") or "")
        header = self._to_primary(header)

        async def local() -> tuple[QueryMeta, Any]:
            if self._state.acl_policy(policy_id)[1] is None:
                raise not_found("Cannot find policy to delete")
            await propose(self._raft, header.request_id, ACLPolicyDelete(policy_id))
            return self._meta(), True

        return await self._router.serve("ACL/PolicyDelete", header, body, local, write=True)

    # ---- roles --------------------------------------------------------------------------------

    async def role_set(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"role": Consul JSON, "id": the URL's ID on update}."""
        raw = shapes.as_object(object_body(body).get("role"), "Role")
        url_id = body.get("id") or ""
        refs = shapes.link_refs(raw, "Policies", "Role")
        services, nodes = shapes.identities(raw, "Role")
        name = shapes.text_field(raw, "Name", "Role")
        description = shapes.text_field(raw, "Description", "Role")
        header = self._to_primary(header)

        async def local() -> tuple[QueryMeta, Any]:
            role_id = url_id or new_id()
            if url_id and self._state.acl_role(url_id)[1] is None:
                raise invalid(f'Cannot find role "{url_id}"')
            role = ACLRole(id=role_id, name=name, description=description, policies=self._policy_links(refs),
                           service_identities=services, node_identities=nodes)
            await propose(self._raft, header.request_id, ACLRoleSet(role))
            stored = self._state.acl_role(role_id)[1]
            assert stored is not None
            return self._meta(), shapes.role_json(stored)

        return await self._router.serve("ACL/RoleSet", header, body, local, write=True)

    async def role_read(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        body = object_body(body)

        def query() -> tuple[int, Any]:
            if body.get("name"):
                return self._state.acl_role_by_name(str(body["name"]))
            return self._state.acl_role(str(body.get("id") or ""))

        async def local() -> tuple[QueryMeta, Any]:
            meta, role = await self._queries.run(header, ACL_TABLES, query)
            return meta, {"role": None if role is None else shapes.role_json(role)}

        return await self._router.serve("ACL/RoleRead", header, body, local, write=False)

    async def role_list(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            meta, roles = await self._queries.run(header, ACL_TABLES, self._state.acl_roles)
            return meta, [shapes.role_json(r) for r in roles]

        return await self._router.serve("ACL/RoleList", header, body, local, write=False)

    async def role_delete(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        role_id = str(object_body(body).get("id") or "")
        header = self._to_primary(header)

        async def local() -> tuple[QueryMeta, Any]:
            if self._state.acl_role(role_id)[1] is None:
                raise not_found("Cannot find role to delete")
            await propose(self._raft, header.request_id, ACLRoleDelete(role_id))
            return self._meta(), True

        return await self._router.serve("ACL/RoleDelete", header, body, local, write=True)


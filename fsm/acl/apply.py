"""Apply of the ACL commands: the state-dependent half of Consul's ACL writes.

Like every handler in fsm/machine.py these decide first and mutate last, so a refused command
changes nothing; a refusal is an `ACLRejected` the machine turns into a Result with Consul's text
(reference/acl.md §3.1-§3.3). The endpoint checks the same things before proposing to give the
caller the error without a Raft round trip; these checks are what holds under races and on
every replica.

Batch upserts come from replication, which copies what the authoritative primary already
accepted: they skip the uniqueness and link checks (a rename that swaps two names would
otherwise be refused half-way) and only take local indexes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from meshfed.fsm.acl.commands import (
    ACLBootstrap,
    ACLPolicyBatchSet,
    ACLPolicyDelete,
    ACLPolicySet,
    ACLRoleBatchSet,
    ACLRoleDelete,
    ACLRoleSet,
    ACLTokenBatchSet,
    ACLTokenDelete,
    ACLTokenSet,
)
from meshfed.fsm.acl.identities import GLOBAL_MANAGEMENT_POLICY_ID
from meshfed.fsm.acl.records import (
    ANONYMOUS_TOKEN_ACCESSOR_ID,
    ACLLink,
    ACLPolicy,
    ACLRole,
    ACLToken,
    policy_hash,
    role_hash,
    token_hash,
)
from meshfed.fsm.acl.store import ACLWrites
from meshfed.fsm.results import CODE_CONFLICT, CODE_INVALID


class ACLRejected(Exception):
    """A refusal decided before anything changed; `code` is one of fsm/results.py's codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def bootstrap_refusal(reset_index: int) -> str:
    return f"ACL bootstrap no longer allowed (reset index: {reset_index})"


def _indexed(record: Any, existing: Any, index: int) -> Any:
    created = existing.create_index if existing is not None else index
    return replace(record, create_index=created, modify_index=index)


def _ids_only(links: tuple[ACLLink, ...]) -> tuple[ACLLink, ...]:
    seen: list[str] = []
    for link in links:
        if link.id not in seen:
            seen.append(link.id)
    return tuple(ACLLink(link_id) for link_id in seen)


def _check_policy_links(writer: ACLWrites, links: tuple[ACLLink, ...]) -> None:
    for link in links:
        if writer.acl_policy(link.id) is None:
            raise ACLRejected(CODE_INVALID, f'No such ACL policy with ID "{link.id}"')


def _policy_to_store(writer: ACLWrites, index: int, policy: ACLPolicy) -> ACLPolicy:
    existing = writer.acl_policy(policy.id)
    same_name = writer.acl_policy_by_name(policy.name)
    if same_name is not None and same_name.id != policy.id:
        raise ACLRejected(CODE_INVALID, f'Invalid Policy: A Policy with Name "{policy.name}" already exists')
    if policy.id == GLOBAL_MANAGEMENT_POLICY_ID and existing is not None:
        if policy.rules != existing.rules:
            raise ACLRejected(CODE_INVALID, "Changing the Rules for the builtin global-management policy is not permitted")
        if policy.datacenters != existing.datacenters:
            raise ACLRejected(
                CODE_INVALID, "Changing the Datacenters of the builtin global-management policy is not permitted"
            )
    return _indexed(replace(policy, hash=policy_hash(policy)), existing, index)


def _role_to_store(writer: ACLWrites, index: int, role: ACLRole) -> ACLRole:
    existing = writer.acl_role(role.id)
    same_name = writer.acl_role_by_name(role.name)
    if same_name is not None and same_name.id != role.id:
        raise ACLRejected(CODE_INVALID, f'Invalid Role: A Role with Name "{role.name}" already exists')
    _check_policy_links(writer, role.policies)
    role = replace(role, policies=_ids_only(role.policies))
    return _indexed(replace(role, hash=role_hash(role)), existing, index)


def _token_to_store(writer: ACLWrites, index: int, token: ACLToken) -> ACLToken:
    """Consul's tokenSetInternal rules that need the state (§3.2)."""
    accessor = token.accessor_id
    existing = writer.acl_token(accessor)
    holder = writer.acl_token_by_secret(token.secret_id)
    if holder is not None and holder.accessor_id != accessor:
        raise ACLRejected(CODE_INVALID, "Invalid Token: SecretID is already in use")
    if existing is None:
        if writer.acl_token_by_secret(accessor) is not None:
            raise ACLRejected(CODE_INVALID, "Invalid Token: AccessorID is already in use")
        if writer.acl_token(token.secret_id) is not None:
            raise ACLRejected(CODE_INVALID, "Invalid Token: SecretID is already in use")
    else:
        if existing.secret_id != token.secret_id:
            raise ACLRejected(CODE_INVALID, "Changing a tokens SecretID is not permitted")
        if existing.local != token.local:
            raise ACLRejected(CODE_INVALID, f"cannot toggle local mode of {accessor}")
        if existing.expiration_time != token.expiration_time:
            raise ACLRejected(CODE_INVALID, f"Cannot change expiration time of {accessor}")
        token = replace(token, create_time=existing.create_time)
    _check_policy_links(writer, token.policies)
    for link in token.roles:
        if writer.acl_role(link.id) is None:
            raise ACLRejected(CODE_INVALID, f'No such ACL role with ID "{link.id}"')
    token = replace(token, policies=_ids_only(token.policies), roles=_ids_only(token.roles), expiration_ttl="")
    return _indexed(replace(token, hash=token_hash(token)), existing, index)


def apply_policy_set(writer: ACLWrites, index: int, command: ACLPolicySet) -> bool:
    writer.put_acl_policy(_policy_to_store(writer, index, command.policy), index)
    return True


def apply_policy_delete(writer: ACLWrites, index: int, command: ACLPolicyDelete) -> bool:
    """True when a policy was deleted; a missing one is a no-op (the endpoint answers 404)."""
    if command.id == GLOBAL_MANAGEMENT_POLICY_ID:
        raise ACLRejected(CODE_INVALID, "Delete operation not permitted on the builtin global-management policy")
    if writer.acl_policy(command.id) is None:
        return False
    writer.delete_acl_policy(command.id, index)
    return True


def apply_role_set(writer: ACLWrites, index: int, command: ACLRoleSet) -> bool:
    writer.put_acl_role(_role_to_store(writer, index, command.role), index)
    return True


def apply_role_delete(writer: ACLWrites, index: int, command: ACLRoleDelete) -> bool:
    if writer.acl_role(command.id) is None:
        return False
    writer.delete_acl_role(command.id, index)
    return True


def apply_token_set(writer: ACLWrites, index: int, command: ACLTokenSet) -> bool:
    writer.put_acl_token(_token_to_store(writer, index, command.token), index)
    return True


def apply_token_delete(writer: ACLWrites, index: int, command: ACLTokenDelete) -> bool:
    if command.accessor_id == ANONYMOUS_TOKEN_ACCESSOR_ID:
        raise ACLRejected(CODE_INVALID, "Delete operation not permitted on the anonymous token")
    if writer.acl_token(command.accessor_id) is None:
        return False
    writer.delete_acl_token(command.accessor_id, index)
    return True


def apply_bootstrap(writer: ACLWrites, index: int, command: ACLBootstrap) -> int:
    """Allowed once, or once more when `reset_index` names the stored bootstrap index (§3.3).
    Returns the new reset index (this entry's index)."""
    done_at = writer.acl_bootstrap_index()
    if done_at:
        if command.reset_index == 0:
            raise ACLRejected(CODE_CONFLICT, bootstrap_refusal(done_at))
        if command.reset_index != done_at:
            raise ACLRejected(
                CODE_INVALID,
                f"Invalid bootstrap reset index (specified {command.reset_index}, reset index: {done_at})",
            )
    token = _token_to_store(writer, index, command.token)
    writer.put_acl_token(token, index)
    writer.set_acl_bootstrap_index(index)
    return index


def apply_policy_batch(writer: ACLWrites, index: int, command: ACLPolicyBatchSet) -> bool:
    for policy in command.policies:
        existing = writer.acl_policy(policy.id)
        writer.put_acl_policy(_indexed(replace(policy, hash=policy_hash(policy)), existing, index), index)
    return True


def apply_role_batch(writer: ACLWrites, index: int, command: ACLRoleBatchSet) -> bool:
    for role in command.roles:
        role = replace(role, policies=_ids_only(role.policies))
        existing = writer.acl_role(role.id)
        writer.put_acl_role(_indexed(replace(role, hash=role_hash(role)), existing, index), index)
    return True


def apply_token_batch(writer: ACLWrites, index: int, command: ACLTokenBatchSet) -> bool:
    for token in command.tokens:
        token = replace(token, policies=_ids_only(token.policies), roles=_ids_only(token.roles), expiration_ttl="")
        existing = writer.acl_token(token.accessor_id)
        writer.put_acl_token(_indexed(replace(token, hash=token_hash(token)), existing, index), index)
    return True


ACL_HANDLERS: dict[type, Callable[[Any, int, Any], Any]] = {
    ACLPolicySet: apply_policy_set,
    ACLPolicyDelete: apply_policy_delete,
    ACLRoleSet: apply_role_set,
    ACLRoleDelete: apply_role_delete,
    ACLTokenSet: apply_token_set,
    ACLTokenDelete: apply_token_delete,
    ACLBootstrap: apply_bootstrap,
    ACLPolicyBatchSet: apply_policy_batch,
    ACLRoleBatchSet: apply_role_batch,
    ACLTokenBatchSet: apply_token_batch,
}

"""ACL commands: their shapes, the checks that need no state, and their log encoding.

`fsm/commands.py` folds these into its `Command` union, tag table and `validate`, so they travel
and dedupe like every other command. The checks here are the state-free half of Consul's
`tokenSetInternal` / `PolicySet` / `RoleSet` (reference/acl.md §2, §3.2): names, identities and
parsing the rules, so a bad policy is refused before it is proposed (and again, identically, on
every replica). What needs the state (unique names, existing links, bootstrap) is in `apply.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshfed.fsm.acl.errors import RulesError
from meshfed.fsm.acl.records import (
    ACLLink,
    ACLPolicy,
    ACLRole,
    ACLToken,
    NodeIdentity,
    ServiceIdentity,
    policy_from_wire,
    role_from_wire,
    token_from_wire,
)
from meshfed.fsm.acl.rules import parse_rules

_POLICY_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,256}$")
_SERVICE_IDENTITY_NAME = re.compile(r"^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$")
MAX_SERVICE_IDENTITY_NAME = 256


@dataclass(frozen=True)
class ACLPolicySet:
    policy: ACLPolicy


@dataclass(frozen=True)
class ACLPolicyDelete:
    id: str


@dataclass(frozen=True)
class ACLRoleSet:
    role: ACLRole


@dataclass(frozen=True)
class ACLRoleDelete:
    id: str


@dataclass(frozen=True)
class ACLTokenSet:
    token: ACLToken


@dataclass(frozen=True)
class ACLTokenDelete:
    accessor_id: str


@dataclass(frozen=True)
class ACLBootstrap:
    """Create the bootstrap token once; `reset_index` (from the reset file, 0 = none) must equal
    the stored bootstrap index to allow one more (reference/acl.md §3.3)."""

    token: ACLToken
    reset_index: int = 0


@dataclass(frozen=True)
class ACLPolicyBatchSet:
    """Replication's upsert of many policies in one entry (§6.3)."""

    policies: tuple[ACLPolicy, ...]


@dataclass(frozen=True)
class ACLRoleBatchSet:
    roles: tuple[ACLRole, ...]


@dataclass(frozen=True)
class ACLTokenBatchSet:
    tokens: tuple[ACLToken, ...]


ACLCommand = (
    ACLPolicySet | ACLPolicyDelete | ACLRoleSet | ACLRoleDelete | ACLTokenSet | ACLTokenDelete | ACLBootstrap
    | ACLPolicyBatchSet | ACLRoleBatchSet | ACLTokenBatchSet
)
ACL_COMMANDS: tuple[type, ...] = (
    ACLPolicySet, ACLPolicyDelete, ACLRoleSet, ACLRoleDelete, ACLTokenSet, ACLTokenDelete, ACLBootstrap,
    ACLPolicyBatchSet, ACLRoleBatchSet, ACLTokenBatchSet,
)

Problem = tuple[str, str]  # (field, message), turned into a CommandError by fsm/commands.py


def _links_problem(links: tuple[ACLLink, ...], field: str) -> Problem | None:
    for link in links:
        if not link.id:
            return field, f"{field}: a link is missing its ID (names are resolved before proposing)"
    return None


def _identities_problem(
    services: tuple[ServiceIdentity, ...], nodes: tuple[NodeIdentity, ...], local: bool = False
) -> Problem | None:
    for service in services:
        name = service.service_name
        if not name:
            return "ServiceIdentities", "Service identity is missing the service name field on this token"
        if len(name) > MAX_SERVICE_IDENTITY_NAME or not _SERVICE_IDENTITY_NAME.match(name):
            return "ServiceIdentities", (
                f"Service identity {name!r} has an invalid name. "
                "Only lowercase alphanumeric characters, '-' and '_' are allowed"
            )
        if local and service.datacenters:
            return "ServiceIdentities", (
                f"Service identity {name!r} cannot specify a list of datacenters on a local token"
            )
    for node in nodes:
        if not node.node_name:
            return "NodeIdentities", "Node identity is missing the node name field on this token"
        if not node.datacenter:
            return "NodeIdentities", "Node identity is missing the datacenter field on this token"
    return None


def policy_problem(policy: ACLPolicy) -> Problem | None:
    if not policy.id:
        return "ID", "ID: missing policy ID"
    if not _POLICY_NAME.match(policy.name):
        return "Name", "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
    try:
        parse_rules(policy.rules)
    except RulesError as exc:
        return "Rules", f"Failed to parse policy: {exc}"
    return None


def role_problem(role: ACLRole) -> Problem | None:
    if not role.id:
        return "ID", "ID: missing role ID"
    if not _ROLE_NAME.match(role.name):
        return "Name", "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
    return _links_problem(role.policies, "Policies") or _identities_problem(
        role.service_identities, role.node_identities
    )


def token_problem(token: ACLToken) -> Problem | None:
    if not token.accessor_id:
        return "AccessorID", "AccessorID: missing token AccessorID"
    if not token.secret_id:
        return "SecretID", "SecretID: missing token SecretID"
    return (
        _links_problem(token.policies, "Policies")
        or _links_problem(token.roles, "Roles")
        or _identities_problem(token.service_identities, token.node_identities, token.local)
    )


def _first(problems: Any) -> Problem | None:
    return next((problem for problem in problems if problem is not None), None)


def acl_shape_problem(command: Any) -> Problem | None:
    """The first state-free reason to refuse an ACL command (types are checked by the caller)."""
    if isinstance(command, ACLPolicySet):
        return policy_problem(command.policy)
    if isinstance(command, ACLRoleSet):
        return role_problem(command.role)
    if isinstance(command, (ACLTokenSet, ACLBootstrap)):
        if isinstance(command, ACLBootstrap) and command.reset_index < 0:
            return "ResetIndex", "ResetIndex: must not be negative"
        return token_problem(command.token)
    if isinstance(command, ACLPolicyBatchSet):
        return _first(policy_problem(policy) for policy in command.policies)
    if isinstance(command, ACLRoleBatchSet):
        return _first(role_problem(role) for role in command.roles)
    if isinstance(command, ACLTokenBatchSet):
        return _first(token_problem(token) for token in command.tokens)
    if isinstance(command, ACLPolicyDelete | ACLRoleDelete):
        return None if command.id else ("ID", "ID: missing ID")
    if isinstance(command, ACLTokenDelete):
        return None if command.accessor_id else ("AccessorID", "Missing token AccessorID")
    return None


# ---- log encoding: tags are stored forever; never rename one ---------------------------------

ACL_TAGS: dict[type, str] = {
    ACLPolicySet: "acl.pol.set/1",
    ACLPolicyDelete: "acl.pol.del/1",
    ACLRoleSet: "acl.role.set/1",
    ACLRoleDelete: "acl.role.del/1",
    ACLTokenSet: "acl.tok.set/1",
    ACLTokenDelete: "acl.tok.del/1",
    ACLBootstrap: "acl.boot/1",
    ACLPolicyBatchSet: "acl.pol.batch/1",
    ACLRoleBatchSet: "acl.role.batch/1",
    ACLTokenBatchSet: "acl.tok.batch/1",
}

ACL_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "acl.pol.set/1": lambda body: ACLPolicySet(policy_from_wire(body["policy"])),
    "acl.pol.del/1": lambda body: ACLPolicyDelete(body["id"]),
    "acl.role.set/1": lambda body: ACLRoleSet(role_from_wire(body["role"])),
    "acl.role.del/1": lambda body: ACLRoleDelete(body["id"]),
    "acl.tok.set/1": lambda body: ACLTokenSet(token_from_wire(body["token"])),
    "acl.tok.del/1": lambda body: ACLTokenDelete(body["accessor_id"]),
    "acl.boot/1": lambda body: ACLBootstrap(token_from_wire(body["token"]), body.get("reset_index") or 0),
    "acl.pol.batch/1": lambda body: ACLPolicyBatchSet(tuple(policy_from_wire(p) for p in body["policies"])),
    "acl.role.batch/1": lambda body: ACLRoleBatchSet(tuple(role_from_wire(r) for r in body["roles"])),
    "acl.tok.batch/1": lambda body: ACLTokenBatchSet(tuple(token_from_wire(t) for t in body["tokens"])),
}

"""ACL records kept by the state machine: policies, roles, tokens and their links.

Field names follow Consul's structs (reference/acl.md §2); the JSON shapes are made at the edge.
Links (`ACLLink`) are stored by ID only (`name` empty): a policy can be renamed, and the names a
token shows must follow, so the store fills them in on read (§2.1). Hashes are base64 BLAKE2b-256
over what Consul hashes (not IDs, times or raft indexes), so a replica can diff by hash.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from meshfed.fsm.acl.identities import GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_MANAGEMENT_RULES_TEXT

GLOBAL_MANAGEMENT_POLICY_NAME = "global-management"
ANONYMOUS_TOKEN_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_TOKEN_SECRET = "anonymous"
RESERVED_ID_PREFIX = "00000000-0000-0000-0000-0000000000"


@dataclass(frozen=True)
class ACLLink:
    id: str
    name: str = ""


@dataclass(frozen=True)
class ServiceIdentity:
    service_name: str
    datacenters: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeIdentity:
    node_name: str
    datacenter: str


@dataclass(frozen=True)
class ACLPolicy:
    id: str
    name: str
    description: str = ""
    rules: str = ""
    datacenters: tuple[str, ...] = ()
    hash: str = ""
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True)
class ACLRole:
    id: str
    name: str
    description: str = ""
    policies: tuple[ACLLink, ...] = ()
    service_identities: tuple[ServiceIdentity, ...] = ()
    node_identities: tuple[NodeIdentity, ...] = ()
    hash: str = ""
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True)
class ACLToken:
    accessor_id: str
    secret_id: str
    description: str = ""
    policies: tuple[ACLLink, ...] = ()
    roles: tuple[ACLLink, ...] = ()
    service_identities: tuple[ServiceIdentity, ...] = ()
    node_identities: tuple[NodeIdentity, ...] = ()
    local: bool = False
    expiration_time: str | None = None  # RFC 3339; None = never expires
    expiration_ttl: str = ""  # input only (the endpoint turns it into expiration_time)
    create_time: str = ""  # RFC 3339, chosen by the proposer (apply reads no clock)
    hash: str = ""
    create_index: int = 0
    modify_index: int = 0


def _digest(parts: list[str]) -> str:
    hasher = hashlib.blake2b(digest_size=32)
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\x00")  # a separator, so ("ab", "c") and ("a", "bc") differ
    return base64.b64encode(hasher.digest()).decode()


def _identity_parts(
    services: tuple[ServiceIdentity, ...], nodes: tuple[NodeIdentity, ...]
) -> list[str]:
    parts = []
    for service in services:
        parts += [service.service_name, *service.datacenters]
    for node in nodes:
        parts += [node.node_name, node.datacenter]
    return parts


def policy_hash(policy: ACLPolicy) -> str:
    return _digest([policy.name, policy.description, policy.rules, *policy.datacenters])


def role_hash(role: ACLRole) -> str:
    return _digest([
        role.name, role.description, *(link.id for link in role.policies),
        *_identity_parts(role.service_identities, role.node_identities),
    ])


def token_hash(token: ACLToken) -> str:
    return _digest([
        token.description, "local" if token.local else "global",
        *(link.id for link in token.policies), *(link.id for link in token.roles),
        *_identity_parts(token.service_identities, token.node_identities),
    ])


def global_management_policy() -> ACLPolicy:
    """The built-in policy every store starts with (Consul's leader creates it at ACL init)."""
    policy = ACLPolicy(
        id=GLOBAL_MANAGEMENT_POLICY_ID,
        name=GLOBAL_MANAGEMENT_POLICY_NAME,
        description="Builtin Policy that grants unlimited access",
        rules=GLOBAL_MANAGEMENT_RULES_TEXT,
    )
    return dataclasses.replace(policy, hash=policy_hash(policy))


def anonymous_token() -> ACLToken:
    """The token of requests that carry none; it exists from the start and cannot be deleted."""
    token = ACLToken(
        accessor_id=ANONYMOUS_TOKEN_ACCESSOR_ID, secret_id=ANONYMOUS_TOKEN_SECRET, description="Anonymous Token"
    )
    return dataclasses.replace(token, hash=token_hash(token))


# ---- wire form (the inverse of records.to_wire) ----------------------------------------------


def _links(items: Any) -> tuple[ACLLink, ...]:
    return tuple(ACLLink(id=item["id"], name=item.get("name") or "") for item in items or ())


def _services(items: Any) -> tuple[ServiceIdentity, ...]:
    return tuple(
        ServiceIdentity(service_name=item["service_name"], datacenters=tuple(item.get("datacenters") or ()))
        for item in items or ()
    )


def _nodes(items: Any) -> tuple[NodeIdentity, ...]:
    return tuple(NodeIdentity(node_name=item["node_name"], datacenter=item["datacenter"]) for item in items or ())


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    # Fields added by a newer version are ignored, not fatal.
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def policy_from_wire(data: dict[str, Any]) -> ACLPolicy:
    fields = _known(ACLPolicy, data)
    fields["datacenters"] = tuple(fields.get("datacenters") or ())
    return ACLPolicy(**fields)


def role_from_wire(data: dict[str, Any]) -> ACLRole:
    fields = _known(ACLRole, data)
    fields["policies"] = _links(fields.get("policies"))
    fields["service_identities"] = _services(fields.get("service_identities"))
    fields["node_identities"] = _nodes(fields.get("node_identities"))
    return ACLRole(**fields)


def token_from_wire(data: dict[str, Any]) -> ACLToken:
    fields = _known(ACLToken, data)
    fields["policies"] = _links(fields.get("policies"))
    fields["roles"] = _links(fields.get("roles"))
    fields["service_identities"] = _services(fields.get("service_identities"))
    fields["node_identities"] = _nodes(fields.get("node_identities"))
    return ACLToken(**fields)

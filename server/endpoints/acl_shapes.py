"""Consul's JSON for ACL tokens, policies and roles (reference/acl.md §2), both ways.

Output: empty link lists, identities and `ExpirationTime` are omitted; `Local`, `Hash` and the
indexes are always there; list stubs drop `Rules`. Input: field names match case-insensitively
(py-consul sends `name` and `rules`), and links arrive as `{ID}` or `{Name}`; resolving names
to IDs needs the state, so it is the endpoint's job, not this module's.
"""

from __future__ import annotations

from typing import Any

from meshfed.fsm.acl.records import ACLLink, ACLPolicy, ACLRole, ACLToken, NodeIdentity, ServiceIdentity
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.rpc.errors import invalid

HIDDEN_SECRET = "<hidden>"


def _links_json(links: tuple[ACLLink, ...]) -> list[dict[str, str]]:
    return [{"ID": link.id, "Name": link.name} for link in links]


def _identities_json(record: ACLToken | ACLRole) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    if record.service_identities:
        shown["ServiceIdentities"] = [
            {"ServiceName": s.service_name, **({"Datacenters": list(s.datacenters)} if s.datacenters else {})}
            for s in record.service_identities
        ]
    if record.node_identities:
        shown["NodeIdentities"] = [
            {"NodeName": n.node_name, "Datacenter": n.datacenter} for n in record.node_identities
        ]
    return shown


def token_json(token: ACLToken, *, hide_secret: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "AccessorID": token.accessor_id,
        "SecretID": HIDDEN_SECRET if hide_secret else token.secret_id,
        "Description": token.description,
    }
    if token.policies:
        shown["Policies"] = _links_json(token.policies)
    if token.roles:
        shown["Roles"] = _links_json(token.roles)
    shown.update(_identities_json(token))
    shown["Local"] = token.local
    if token.expiration_time:
        shown["ExpirationTime"] = token.expiration_time
    shown.update(CreateTime=token.create_time, Hash=token.hash,
                 CreateIndex=token.create_index, ModifyIndex=token.modify_index)
    return shown


def policy_json(policy: ACLPolicy, *, stub: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {"ID": policy.id, "Name": policy.name, "Description": policy.description}
    if not stub:
        shown["Rules"] = policy.rules
    if policy.datacenters:
        shown["Datacenters"] = list(policy.datacenters)
    shown.update(Hash=policy.hash, CreateIndex=policy.create_index, ModifyIndex=policy.modify_index)
    return shown


def role_json(role: ACLRole) -> dict[str, Any]:
    shown: dict[str, Any] = {"ID": role.id, "Name": role.name, "Description": role.description}
    if role.policies:
        shown["Policies"] = _links_json(role.policies)
    shown.update(_identities_json(role))
    shown.update(Hash=role.hash, CreateIndex=role.create_index, ModifyIndex=role.modify_index)
    return shown


# ---- input ------------------------------------------------------------------------------------


def text_field(body: dict[str, Any], name: str, what: str) -> str:
    value = lookup(body, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(f"{what} decoding failed: {name} must be a string, got {value!r:.60}")
    return value


def _list_field(body: dict[str, Any], name: str, what: str) -> list[Any]:
    value = lookup(body, name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise invalid(f"{what} decoding failed: {name} must be a list of objects")
    return value


def link_refs(body: dict[str, Any], name: str, what: str) -> list[tuple[str, str]]:
    """(ID, Name) pairs as given; one of them may be empty."""
    return [(text_field(item, "ID", what), text_field(item, "Name", what)) for item in _list_field(body, name, what)]


def identities(body: dict[str, Any], what: str) -> tuple[tuple[ServiceIdentity, ...], tuple[NodeIdentity, ...]]:
    services = []
    for item in _list_field(body, "ServiceIdentities", what):
        datacenters = lookup(item, "Datacenters") or []
        if not isinstance(datacenters, list) or not all(isinstance(dc, str) for dc in datacenters):
            raise invalid(f"{what} decoding failed: ServiceIdentities[].Datacenters must be a list of strings")
        services.append(ServiceIdentity(text_field(item, "ServiceName", what), tuple(datacenters)))
    nodes = [
        NodeIdentity(text_field(item, "NodeName", what), text_field(item, "Datacenter", what))
        for item in _list_field(body, "NodeIdentities", what)
    ]
    return tuple(services), tuple(nodes)


def datacenters(body: dict[str, Any], what: str) -> tuple[str, ...]:
    value = lookup(body, "Datacenters") or []
    if not isinstance(value, list) or not all(isinstance(dc, str) for dc in value):
        raise invalid(f"{what} decoding failed: Datacenters must be a list of strings")
    return tuple(value)


def as_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid(f"{what} decoding failed: the body must be a JSON object")
    return body


def token_from_json(shown: Any) -> ACLToken:
    """The record behind `token_json` output (a remote resolve's answer); links keep their names.

    Raises:
        ValueError: the answer is not a token object (a primary of another version, a bug).
    """
    if not isinstance(shown, dict) or not isinstance(shown.get("AccessorID"), str):
        raise ValueError(f"not a token: {shown!r:.80}")
    services, nodes = identities(shown, "Token")
    expiration = lookup(shown, "ExpirationTime")
    return ACLToken(
        accessor_id=shown["AccessorID"],
        secret_id=text_field(shown, "SecretID", "Token"),
        description=text_field(shown, "Description", "Token"),
        policies=tuple(ACLLink(i, n) for i, n in link_refs(shown, "Policies", "Token")),
        roles=tuple(ACLLink(i, n) for i, n in link_refs(shown, "Roles", "Token")),
        service_identities=services,
        node_identities=nodes,
        local=bool(lookup(shown, "Local")),
        expiration_time=expiration if isinstance(expiration, str) else None,
        create_time=text_field(shown, "CreateTime", "Token"),
        hash=text_field(shown, "Hash", "Token"),
    )

"""`meshfed acl ...`: bootstrap, policies, tokens and roles through the HTTP API (reference/acl.md §7).

Output follows Consul's CLI (`AccessorID:`, `SecretID:`, ... and `<id> - <name>` link lines) so
scripts written against `consul acl` read it unchanged. The token a call carries comes from
`-token`, then `-token-file`, then CONSUL_HTTP_TOKEN, as in Consul; it travels as X-Consul-Token.

`main.py` owns the HTTP client and hands it in (`add_commands`), so this module does not import
the module that imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

Request = Callable[[argparse.Namespace, str, str, Any], Any]


class ACLCommandError(Exception):
    """A bad flag value; main prints it like any CLI error."""


# ---- output -------------------------------------------------------------------------------------


def _line(label: str, value: Any, width: int) -> str:
    return f"{label + ':':<{width}}{value}"


def _links(title: str, links: list[dict[str, str]]) -> list[str]:
    return [f"{title}:", *(f"   {link['ID']} - {link['Name']}" for link in links)] if links else []


def _identities(item: dict[str, Any]) -> list[str]:
    lines = []
    if item.get("ServiceIdentities"):
        lines.append("Service Identities:")
        for identity in item["ServiceIdentities"]:
            datacenters = ", ".join(identity.get("Datacenters") or []) or "All"
            lines.append(f"   {identity['ServiceName']} (Datacenters: {datacenters})")
    if item.get("NodeIdentities"):
        lines.append("Node Identities:")
        lines += [f"   {n['NodeName']} (Datacenter: {n['Datacenter']})" for n in item["NodeIdentities"]]
    return lines


def format_token(token: dict[str, Any]) -> str:
    width = 18
    lines = [
        _line("AccessorID", token["AccessorID"], width),
        _line("SecretID", token["SecretID"], width),
        _line("Description", token.get("Description", ""), width),
        _line("Local", str(token.get("Local", False)).lower(), width),
        _line("Create Time", token.get("CreateTime", ""), width),
    ]
    if token.get("ExpirationTime"):
        lines.append(_line("Expiration Time", token["ExpirationTime"], width))
    lines += _links("Policies", token.get("Policies") or []) + _links("Roles", token.get("Roles") or [])
    return "\n".join(lines + _identities(token))


def format_policy(policy: dict[str, Any]) -> str:
    width = 14
    lines = [
        _line("ID", policy["ID"], width),
        _line("Name", policy["Name"], width),
        _line("Description", policy.get("Description", ""), width),
        _line("Datacenters", ", ".join(policy.get("Datacenters") or []), width),
    ]
    if "Rules" in policy:
        lines += ["Rules:", policy["Rules"]]
    return "\n".join(lines)


def format_role(role: dict[str, Any]) -> str:
    width = 14
    lines = [_line("ID", role["ID"], width), _line("Name", role["Name"], width),
             _line("Description", role.get("Description", ""), width)]
    return "\n".join(lines + _links("Policies", role.get("Policies") or []) + _identities(role))


# ---- flag values --------------------------------------------------------------------------------


def read_rules(value: str) -> str:
    """`-rules`: `@file` reads a file, `-` reads stdin, anything else is the rules text itself."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as rules_file:
                return rules_file.read()
        except OSError as exc:
            raise ACLCommandError(f"cannot read rules from {value[1:]}: {exc.strerror}") from None
    return value


def service_identity(value: str) -> dict[str, Any]:
    """`web` or `web:dc1,dc2`."""
    name, _, datacenters = value.partition(":")
    identity: dict[str, Any] = {"ServiceName": name}
    if datacenters:
        identity["Datacenters"] = [dc for dc in datacenters.split(",") if dc]
    return identity


def node_identity(value: str) -> dict[str, str]:
    """`node1:dc1` (the datacenter is required)."""
    name, _, datacenter = value.partition(":")
    if not name or not datacenter:
        raise ACLCommandError(f"-node-identity {value!r}: want NODE:DATACENTER")
    return {"NodeName": name, "Datacenter": datacenter}


def apply_token_file(ns: argparse.Namespace) -> None:
    """-token beats -token-file, which beats CONSUL_HTTP_TOKEN (read by the HTTP client)."""
    if not getattr(ns, "token", None) and getattr(ns, "token_file", None):
        try:
            with open(ns.token_file, encoding="utf-8") as token_file:
                ns.token = token_file.read().strip()
        except OSError as exc:
            raise ACLCommandError(f"cannot read -token-file {ns.token_file}: {exc.strerror}") from None


def _links_from(ns: argparse.Namespace, id_flag: str, name_flag: str) -> list[dict[str, str]]:
    return [{"ID": i} for i in getattr(ns, id_flag, None) or []] + [
        {"Name": n} for n in getattr(ns, name_flag, None) or []
    ]


def _identity_fields(ns: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if ns.service_identity:
        fields["ServiceIdentities"] = [service_identity(v) for v in ns.service_identity]
    if ns.node_identity:
        fields["NodeIdentities"] = [node_identity(v) for v in ns.node_identity]
    return fields


# ---- commands -----------------------------------------------------------------------------------


def _commands(request: Request) -> dict[str, Callable[[argparse.Namespace], int]]:
    def call(ns: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
        apply_token_file(ns)
        return request(ns, method, path, body)

    def policy_id(ns: argparse.Namespace) -> str:
        if ns.id:
            return ns.id
        if not ns.name:
            raise ACLCommandError("Must specify either the -id or -name parameters")
        return call(ns, "GET", f"/v1/acl/policy/name/{quote(ns.name, safe='')}")["ID"]

    def bootstrap(ns: argparse.Namespace) -> int:
        print(format_token(call(ns, "PUT", "/v1/acl/bootstrap", {})))
        return 0

    def policy_create(ns: argparse.Namespace) -> int:
        body = {"Name": ns.name, "Description": ns.description, "Rules": read_rules(ns.rules) if ns.rules else ""}
        if ns.valid_datacenter:
            body["Datacenters"] = ns.valid_datacenter
        print(format_policy(call(ns, "PUT", "/v1/acl/policy", body)))
        return 0

    def policy_list(ns: argparse.Namespace) -> int:
        for policy in call(ns, "GET", "/v1/acl/policies"):
            print(f"{policy['Name']}:")
            print(_line("   ID", policy["ID"], 17))
            print(_line("   Description", policy.get("Description", ""), 17))
            print(_line("   Datacenters", ", ".join(policy.get("Datacenters") or []), 17))
        return 0

    def policy_read(ns: argparse.Namespace) -> int:
        print(format_policy(call(ns, "GET", f"/v1/acl/policy/{policy_id(ns)}")))
        return 0

    def policy_delete(ns: argparse.Namespace) -> int:
        target = policy_id(ns)
        call(ns, "DELETE", f"/v1/acl/policy/{target}")
        print(f'Policy "{target}" deleted successfully')
        return 0

    def token_create(ns: argparse.Namespace) -> int:
        body: dict[str, Any] = {"Description": ns.description, "Local": ns.local, **_identity_fields(ns)}
        body["Policies"] = _links_from(ns, "policy_id", "policy_name")
        body["Roles"] = _links_from(ns, "role_id", "role_name")
        if ns.expires_ttl:
            body["ExpirationTTL"] = ns.expires_ttl
        if ns.accessor:
            body["AccessorID"] = ns.accessor
        if ns.secret:
            body["SecretID"] = ns.secret
        print(format_token(call(ns, "PUT", "/v1/acl/token", body)))
        return 0

    def token_list(ns: argparse.Namespace) -> int:
        print("\n\n".join(format_token(token) for token in call(ns, "GET", "/v1/acl/tokens")))
        return 0

    def token_read(ns: argparse.Namespace) -> int:
        if not ns.id and not ns.self:
            raise ACLCommandError("Must specify the -id parameter (or -self)")
        path = "/v1/acl/token/self" if ns.self else f"/v1/acl/token/{ns.id}"
        print(format_token(call(ns, "GET", path)))
        return 0

    def token_update(ns: argparse.Namespace) -> int:
        """Links not named on the command line are kept; named ones replace the old unless
        -merge-policies / -merge-roles / -merge-service-identities / -merge-node-identities."""
        current = call(ns, "GET", f"/v1/acl/token/{ns.id}")
        body: dict[str, Any] = {"AccessorID": ns.id, "Description": current.get("Description", "")}
        if ns.description is not None:
            body["Description"] = ns.description
        for key, given, merge in (
            ("Policies", _links_from(ns, "policy_id", "policy_name"), ns.merge_policies),
            ("Roles", _links_from(ns, "role_id", "role_name"), ns.merge_roles),
            ("ServiceIdentities", _identity_fields(ns).get("ServiceIdentities", []), ns.merge_service_identities),
            ("NodeIdentities", _identity_fields(ns).get("NodeIdentities", []), ns.merge_node_identities),
        ):
            existing = current.get(key) or []
            body[key] = (existing + given) if (merge or not given) else given
            if key in ("Policies", "Roles"):
                body[key] = [{"ID": link["ID"]} if "ID" in link else link for link in body[key]]
        print(format_token(call(ns, "PUT", f"/v1/acl/token/{ns.id}", body)))
        return 0

    def token_delete(ns: argparse.Namespace) -> int:
        call(ns, "DELETE", f"/v1/acl/token/{ns.id}")
        print(f'Token "{ns.id}" deleted successfully')
        return 0

    def role_create(ns: argparse.Namespace) -> int:
        body = {"Name": ns.name, "Description": ns.description, "Policies": _links_from(ns, "policy_id", "policy_name"),
                **_identity_fields(ns)}
        print(format_role(call(ns, "PUT", "/v1/acl/role", body)))
        return 0

    def role_list(ns: argparse.Namespace) -> int:
        print("\n\n".join(format_role(role) for role in call(ns, "GET", "/v1/acl/roles")))
        return 0

    return {
        "bootstrap": bootstrap, "policy create": policy_create, "policy list": policy_list,
        "policy read": policy_read, "policy delete": policy_delete, "token create": token_create,
        "token list": token_list, "token read": token_read, "token update": token_update,
        "token delete": token_delete, "role create": role_create, "role list": role_list,
    }


# ---- parser -------------------------------------------------------------------------------------


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    parser.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), **kwargs)


def _link_flags(parser: argparse.ArgumentParser, *, roles: bool) -> None:
    _flag(parser, "policy-id", action="append", help="ID of a policy to link (repeatable)")
    _flag(parser, "policy-name", action="append", help="name of a policy to link (repeatable)")
    if roles:
        _flag(parser, "role-id", action="append", help="ID of a role to link (repeatable)")
        _flag(parser, "role-name", action="append", help="name of a role to link (repeatable)")
    _flag(parser, "service-identity", action="append", help="NAME or NAME:DC1,DC2 (repeatable)")
    _flag(parser, "node-identity", action="append", help="NODE:DATACENTER (repeatable)")


def add_commands(
    sub: Any, add_http_flags: Callable[[argparse.ArgumentParser], None], request: Request
) -> None:
    """Register `acl ...` under the top-level sub-parsers `sub`."""
    commands = _commands(request)
    areas = sub.add_parser("acl", help="ACL bootstrap, policies, tokens and roles").add_subparsers(
        dest="area", metavar="AREA")
    areas.required = True
    made: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, help_text: str, parent: Any = None) -> argparse.ArgumentParser:
        parser = (parent or areas).add_parser(name.split()[-1], help=help_text)
        add_http_flags(parser)
        _flag(parser, "token-file", help="file holding the ACL token (after -token, before CONSUL_HTTP_TOKEN)")
        parser.set_defaults(func=commands[name])
        made[name] = parser
        return parser

    command("bootstrap", "create the initial management token (once)")
    groups = {}
    for group, help_text in (("policy", "ACL policies"), ("token", "ACL tokens"), ("role", "ACL roles")):
        groups[group] = areas.add_parser(group, help=help_text).add_subparsers(dest="action", metavar="ACTION")
        groups[group].required = True

    create = command("policy create", "create a policy", groups["policy"])
    _flag(create, "name", required=True)
    _flag(create, "description", default="")
    _flag(create, "rules", default="", help="rules text, @FILE, or - for stdin")
    _flag(create, "valid-datacenter", action="append", help="limit the policy to this datacenter (repeatable)")
    command("policy list", "list policies", groups["policy"])
    for name, help_text in (("policy read", "print a policy"), ("policy delete", "delete a policy")):
        by = command(name, help_text, groups["policy"])
        _flag(by, "id", default="")
        _flag(by, "name", default="")

    create = command("token create", "create a token", groups["token"])
    _flag(create, "description", default="")
    _link_flags(create, roles=True)
    _flag(create, "local", action="store_true", help="a token of this datacenter only (not replicated)")
    _flag(create, "expires-ttl", default="", help="e.g. 1h (1m to 24h)")
    _flag(create, "accessor", default="")
    _flag(create, "secret", default="")
    command("token list", "list tokens", groups["token"])
    read = command("token read", "print a token", groups["token"])
    _flag(read, "id", default="")
    _flag(read, "self", action="store_true", help="the token this command runs with")
    update = command("token update", "change a token's description or links", groups["token"])
    _flag(update, "id", required=True)
    _flag(update, "description", default=None)
    _link_flags(update, roles=True)
    for merged in ("policies", "roles", "service-identities", "node-identities"):
        _flag(update, f"merge-{merged}", action="store_true", help=f"add to the token's {merged} instead of replacing")
    delete = command("token delete", "delete a token", groups["token"])
    _flag(delete, "id", required=True)

    create = command("role create", "create a role", groups["role"])
    _flag(create, "name", required=True)
    _flag(create, "description", default="")
    _link_flags(create, roles=False)
    command("role list", "list roles", groups["role"])

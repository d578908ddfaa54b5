"""The mesh gateway and the servers' ACLs: where its token comes from, and what a refusal says.

Reference/acl.md §8 step 5 gives the gateway's policy: `service "mesh-gateway" write`,
`service_prefix "" read`, `node_prefix "" read`. meshfed has no client agents, so the gateway
also registers (and on shutdown deregisters) its own catalog node, which in Consul the local
agent does with its agent token (§8 step 4): the token needs `node "<gateway node>" write` too,
most simply as a node identity (`acl token create -node-identity <node>:<dc>`).

A refusal is not a network failure (`server_api.Denied`, logged by `server_api.DenialLog`): the
line the gateway logs (`denied_message`) quotes the server, whose `Permission denied ...` text
names the missing permission, and says which rules the token needs and how to pass it.
"""

from __future__ import annotations

from collections.abc import Mapping

TOKEN_SOURCES = "-token-file, -token, CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE"

# (node, datacenter, has a token): what a message about a refusal needs to know of the gateway.
Facts = tuple[str, str, bool]


def token_rules(node: str, datacenter: str) -> str:
    """What the gateway's token must grant, in the words of a policy."""
    return (f'service "mesh-gateway" write, node "{node}" write (its own catalog node, e.g. '
            f'-node-identity {node}:{datacenter}), service_prefix "" read and node_prefix "" read')


def denied_message(facts: Facts, what: str, server_text: str) -> str:
    """One line: what was refused, the server's text (it names the permission), what to do."""
    node, datacenter, has_token = facts
    source = "its token" if has_token else f"no token (the anonymous token is used; give one with {TOKEN_SOURCES})"
    return (f"{what} refused by the servers' ACLs with {source}: {server_text.strip()[:300]} "
            f"-- the mesh gateway's token needs {token_rules(node, datacenter)}")


def gateway_token(flag: str, flag_file: str, environ: Mapping[str, str]) -> str:
    """The gateway's ACL token, found as Consul's CLI finds it: `-token`, then `-token-file`, then
    CONSUL_HTTP_TOKEN, then CONSUL_HTTP_TOKEN_FILE; "" for none (the anonymous token).

    A file or the environment keeps the secret off the process list, where any local user can
    read `-token`'s value. Raises ValueError naming the source when the file cannot be read or
    is empty (an empty file would otherwise silently mean "anonymous").
    """
    if flag:
        return flag
    path, what = flag_file, "-token-file"
    if not path and environ.get("CONSUL_HTTP_TOKEN"):
        return environ["CONSUL_HTTP_TOKEN"]
    if not path:
        path, what = environ.get("CONSUL_HTTP_TOKEN_FILE", ""), "CONSUL_HTTP_TOKEN_FILE"
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as token_file:
            token = token_file.read().strip()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not token:
        raise ValueError(f"{what}: {path} is empty")
    return token

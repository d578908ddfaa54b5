"""The demo's ACLs (issue #9 item 6): default deny in both DCs, set up the way reference/acl.md §8
tells operators to, so the demo doubles as a worked example.

- dc1 starts with `acl.tokens.initial_management` (no `acl bootstrap` step); the demo writes that
  secret to `<root>/management-token` (0600) and prints how to use it;
- a `replication` policy and token (Consul's recommended rules) let dc2's leader replicate ACLs
  and authorize the servers' own cross-DC calls;
- each mesh gateway gets a token with the mesh-gateway rules plus a node identity for its own
  catalog node; each sidecar gets a service-identity token for its service;
- every secret reaches its process in a 0600 file (`-token-file`), never on a command line.

Secrets are generated here (random UUIDs, as Consul's) so the tokens can be created with known
SecretIDs before the processes that use them start.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meshfed.server.cli.launcher import FederatedDatacenter

REPLICATION_RULES = 'acl = "write"\noperator = "write"\nservice_prefix "" { policy = "read" intentions = "read" }\n'
MESH_GATEWAY_RULES = ('service "mesh-gateway" { policy = "write" }\nservice_prefix "" { policy = "read" }\n'
                      'node_prefix "" { policy = "read" }\n')
ACL_BASE = {"enabled": True, "default_policy": "deny", "down_policy": "extend-cache", "enable_token_persistence": True}


@dataclass
class DemoTokens:
    management: str = field(default_factory=lambda: str(uuid.uuid4()))
    replication: str = field(default_factory=lambda: str(uuid.uuid4()))
    gateways: dict[str, str] = field(default_factory=dict)  # datacenter -> secret
    services: dict[str, str] = field(default_factory=dict)  # service -> secret

    def gateway(self, datacenter: str) -> str:
        return self.gateways.setdefault(datacenter, str(uuid.uuid4()))

    def service(self, name: str) -> str:
        return self.services.setdefault(name, str(uuid.uuid4()))


def server_acl(names: Sequence[str], tokens: DemoTokens) -> dict[str, dict[str, Any]]:
    """The `acl` block of each DC's servers (names[0] is the primary)."""
    primary, *secondaries = names
    blocks = {primary: {"acl": {**ACL_BASE, "tokens": {"initial_management": tokens.management}}}}
    for name in secondaries:
        blocks[name] = {"acl": {**ACL_BASE, "enable_token_replication": True,
                                "tokens": {"replication": tokens.replication}}}
    return blocks


def write_secret(root: str, name: str, secret: str) -> str:
    path = os.path.join(root, name)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(secret + "\n")
    return path


def seed_calls(dcs: Sequence[FederatedDatacenter], tokens: DemoTokens, services: Sequence[str],
               replication: bool = True) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Policies and tokens, written in the primary (global tokens replicate to the others).
    `replication=False`: a cluster of its own (peering), with no secondary to replicate to."""
    server = dcs[0].servers[0].http
    calls: list[tuple[str, str, str, dict[str, Any]]] = [
        (server, "PUT", "/v1/acl/policy", {"Name": "mesh-gateway", "Rules": MESH_GATEWAY_RULES}),
    ]
    if replication:
        calls += [
            (server, "PUT", "/v1/acl/policy", {"Name": "replication", "Rules": REPLICATION_RULES,
                                               "Description": "dc2's ACL replication and cross-DC calls"}),
            (server, "PUT", "/v1/acl/token", {"Description": "replication", "SecretID": tokens.replication,
                                              "Policies": [{"Name": "replication"}]}),
        ]
    for dc in dcs:
        node = dc.gateway.node or f"gw-{dc.name}-{dc.gateway.address}"
        calls.append((server, "PUT", "/v1/acl/token", {
            "Description": f"mesh gateway of {dc.name}", "SecretID": tokens.gateway(dc.name),
            "Policies": [{"Name": "mesh-gateway"}], "NodeIdentities": [{"NodeName": node, "Datacenter": dc.name}]}))
    for name in services:
        calls.append((server, "PUT", "/v1/acl/token", {
            "Description": f"{name} and its sidecar", "SecretID": tokens.service(name),
            "ServiceIdentities": [{"ServiceName": name}]}))
    return calls

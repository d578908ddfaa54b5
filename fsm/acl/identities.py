"""Rules that Consul writes for you: identity policies and the built-in policies.

Reference: reference/acl.md §2.4 (built-ins) and §2.5 (synthetic policies). A token's service and
node identities expand to these rules before the authorizer merges them with its real policies.
Datacenter limits (a service identity's `Datacenters`, a node identity's `Datacenter`) are applied
by the caller, which knows the local datacenter: an identity that does not apply is simply not passed.
"""

from __future__ import annotations

from meshfed.fsm.acl.rules import (
    NAMED_RESOURCES,
    UNNAMED_RESOURCES,
    Access,
    NamedRule,
    PolicyRules,
    UnnamedRule,
)

SIDECAR_PROXY_SUFFIX = "-sidecar-proxy"
GLOBAL_MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_READ_ONLY_POLICY_ID = "00000000-0000-0000-0000-000000000002"


def service_identity_rules(service_name: str) -> PolicyRules:
    """A service identity: write on the service and its sidecar, read on every service and node.

    Service write implies intention read (not write), as any service rule does (§4.2).
    """
    return PolicyRules(named=(
        NamedRule("service", service_name, False, Access.WRITE),
        NamedRule("service", service_name + SIDECAR_PROXY_SUFFIX, False, Access.WRITE),
        NamedRule("service", "", True, Access.READ),
        NamedRule("node", "", True, Access.READ),
    ))


def node_identity_rules(node_name: str) -> PolicyRules:
    """A node identity: write on its node, read on every service (what an agent token needs)."""
    return PolicyRules(named=(
        NamedRule("node", node_name, False, Access.WRITE),
        NamedRule("service", "", True, Access.READ),
    ))


def _everything_at(access: Access) -> PolicyRules:
    """Every resource at one level, with `service_prefix ""` carrying the same intentions level."""
    return PolicyRules(
        unnamed=tuple(UnnamedRule(resource, access) for resource in UNNAMED_RESOURCES),
        named=tuple(
            NamedRule(resource, "", True, access, access if resource == "service" else None)
            for resource in NAMED_RESOURCES
        ),
    )


# The global-management policy's rules (its rules cannot be edited).
GLOBAL_MANAGEMENT_RULES = _everything_at(Access.WRITE)
# builtin/global-read-only: the same resources at read.
GLOBAL_READ_ONLY_RULES = _everything_at(Access.READ)

GLOBAL_MANAGEMENT_RULES_TEXT = """\
acl = "write"
keyring = "write"
mesh = "write"
operator = "write"
peering = "write"
agent_prefix "" { policy = "write" }
event_prefix "" { policy = "write" }
key_prefix "" { policy = "write" }
node_prefix "" { policy = "write" }
query_prefix "" { policy = "write" }
service_prefix "" { policy = "write" intentions = "write" }
session_prefix "" { policy = "write" }
"""

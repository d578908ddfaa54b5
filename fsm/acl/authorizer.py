"""Permission decisions for one token: its policies' rules merged, then looked up per request.

Reference: reference/acl.md §4.2 (one resource name) and §4.3 (several policies).

Build (`Authorizer.from_rules`): every rule of every policy lands in one table per resource, keyed by
(exact or prefix, name). Two rules on the same key merge by precedence deny > write > list > read,
whichever policy they came from, so the order of policies can never matter and adding a deny can
never grant. Service rules also fill the `intention` table (explicit `intentions`, or the level
implied by `policy`).

Decide (`allowed`):
1. the exact rule for the name, else the longest prefix rule that matches it;
2. a found rule is final: deny denies; write grants read/list/write; list grants read/list; read
   grants read only — a write request under a `read` rule is denied, never left to the default;
3. `mesh` and `peering` without a rule of their own use the `operator` rule;
4. nothing matched: the default policy (`allow` / `deny`), except that the allow default never
   grants `acl` (the allow-all default grants everything but ACL management).
A management authorizer grants everything. Policies limited to other datacenters must be dropped
by the caller before building (they do not exist here).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from meshfed.fsm.acl.rules import NAMED_RESOURCES, UNNAMED_RESOURCES, Access, PolicyRules

INTENTION = "intention"  # Consul's resource name for intention permissions (`intention:write`)
# Unnamed resources that, with no rule of their own, take the operator rule's level (§4.2).
FALLS_BACK_TO_OPERATOR = frozenset({"mesh", "peering"})
# The allow-all default grants everything except ACL management (§4.2 step 3, §9 case 29).
NEVER_DEFAULT_ALLOWED = frozenset({"acl"})


class DefaultPolicy(enum.Enum):
    """`acl.default_policy`: what a request no rule matches gets."""

    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class _Table:
    """The merged rules of one named resource: exact names and prefixes (longest first)."""

    exact: Mapping[str, Access] = field(default_factory=lambda: MappingProxyType({}))
    prefixes: tuple[tuple[str, Access], ...] = ()

    @classmethod
    def build(cls, exact: dict[str, Access], prefixes: dict[str, Access]) -> _Table:
        by_length = tuple(sorted(prefixes.items(), key=lambda item: (-len(item[0]), item[0])))
        return cls(MappingProxyType(dict(exact)), by_length)

    def lookup(self, name: str) -> Access | None:
        """The level of the rule that governs `name`, or None when no rule does."""
        found = self.exact.get(name)
        if found is not None:
            return found
        for prefix, access in self.prefixes:
            if name.startswith(prefix):
                return access
        return None

    def grants_every_name(self, wanted: Access, default_grants: bool) -> bool:
        """Every rule grants `wanted`, and so does whatever decides a name no rule matches: a
        catch-all prefix `""` (itself one of the rules) or else the default."""
        if not all(access.grants(wanted) for access in self.exact.values()):
            return False
        if not all(access.grants(wanted) for _, access in self.prefixes):
            return False
        return default_grants or any(prefix == "" for prefix, _ in self.prefixes)

    def any_grants(self, wanted: Access) -> bool | None:
        """Consul's `...Any` checks: does some rule grant `wanted` on at least one name?

        True when any rule grants it; False when none does and the catch-all prefix `""` denies it
        (so no unnamed name could get it from the default); None to defer to the default.
        """
        if any(access.grants(wanted) for access in self.exact.values()):
            return True
        if any(access.grants(wanted) for _, access in self.prefixes):
            return True
        catch_all = dict(self.prefixes).get("")
        return False if catch_all is not None else None


def _merge(into: dict[str, Access], key: str, access: Access) -> None:
    current = into.get(key)
    into[key] = access if current is None else max(current, access)


@dataclass(frozen=True)
class Authorizer:
    """Answers `resource:access on name` for one token. Immutable; build it once per token/policy set."""

    default_policy: DefaultPolicy
    management: bool = False
    unnamed: Mapping[str, Access] = field(default_factory=lambda: MappingProxyType({}))
    named: Mapping[str, _Table] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_rules(cls, policies: Iterable[PolicyRules], default_policy: DefaultPolicy) -> Authorizer:
        """Merge the rules of all the token's policies (roles and identities already expanded)."""
        unnamed: dict[str, Access] = {}
        exact: dict[str, dict[str, Access]] = {resource: {} for resource in (*NAMED_RESOURCES, INTENTION)}
        prefixes: dict[str, dict[str, Access]] = {resource: {} for resource in (*NAMED_RESOURCES, INTENTION)}
        for rules in policies:
            for unnamed_rule in rules.unnamed:
                _merge(unnamed, unnamed_rule.resource, unnamed_rule.access)
            for rule in rules.named:
                tables = prefixes if rule.prefix else exact
                _merge(tables[rule.resource], rule.name, rule.access)
                intention_access = rule.intention_access
                if intention_access is not None:
                    _merge(tables[INTENTION], rule.name, intention_access)
        named = {resource: _Table.build(exact[resource], prefixes[resource]) for resource in exact}
        return cls(default_policy, False, MappingProxyType(unnamed), MappingProxyType(named))

    @classmethod
    def for_management(cls, default_policy: DefaultPolicy = DefaultPolicy.DENY) -> Authorizer:
        """Everything allowed; `default_policy` still sets the intention default (reference §6.4)."""
        return cls(default_policy, management=True)

    def _default(self, resource: str) -> bool:
        if self.default_policy is DefaultPolicy.DENY:
            return False
        return resource not in NEVER_DEFAULT_ALLOWED

    def _unnamed_level(self, resource: str) -> Access | None:
        level = self.unnamed.get(resource)
        if level is None and resource in FALLS_BACK_TO_OPERATOR:
            level = self.unnamed.get("operator")
        return level

    def allowed(self, resource: str, wanted: Access, name: str | None = None) -> bool:
        """The decision for `resource:wanted` (on `name` for named resources).

        Raises:
            ValueError: for a resource this module does not know, so a typo cannot silently allow.
        """
        if resource in UNNAMED_RESOURCES:
            level = self._unnamed_level(resource)
        elif resource in NAMED_RESOURCES or resource == INTENTION:
            if name is None:
                raise ValueError(f"{resource} permissions need a name")
            level = self.named[resource].lookup(name) if self.named else None
        else:
            raise ValueError(f"unknown ACL resource {resource!r}")
        if self.management:
            return True
        if level is not None:
            return level.grants(wanted)
        return self._default(resource)

    def allowed_on_any(self, resource: str, wanted: Access) -> bool:
        """Consul's `ServiceReadAny`-style checks: is `wanted` granted on at least one name?"""
        if resource not in NAMED_RESOURCES and resource != INTENTION:
            raise ValueError(f"{resource!r} has no names; use allowed()")
        if self.management:
            return True
        decision = self.named[resource].any_grants(wanted) if self.named else None
        return self._default(resource) if decision is None else decision

    def allowed_on_all(self, resource: str, wanted: Access) -> bool:
        """Is `wanted` granted on every name of `resource`? Lets a filter skip a long list it
        would keep whole (a gateway's `service_prefix "" { policy = "read" }` token reading 1,000
        DCs of gateways decoded and checked 4,000 rows to drop none)."""
        if resource not in NAMED_RESOURCES and resource != INTENTION:
            raise ValueError(f"{resource!r} has no names; use allowed()")
        if self.management:
            return True
        table = self.named.get(resource) if self.named else None
        if table is None:
            return self._default(resource)
        return table.grants_every_name(wanted, self._default(resource))

    def intention_default_allow(self) -> bool:
        """The action when no intention matches: the default policy, whatever the token (§6.4)."""
        return self.default_policy is DefaultPolicy.ALLOW

    # Consul-named shortcuts, so call sites read like the permission table of reference §5.
    def acl_read(self) -> bool:
        return self.allowed("acl", Access.READ)

    def acl_write(self) -> bool:
        return self.allowed("acl", Access.WRITE)

    def operator_read(self) -> bool:
        return self.allowed("operator", Access.READ)

    def operator_write(self) -> bool:
        return self.allowed("operator", Access.WRITE)

    def mesh_read(self) -> bool:
        return self.allowed("mesh", Access.READ)

    def mesh_write(self) -> bool:
        return self.allowed("mesh", Access.WRITE)

    def peering_read(self) -> bool:
        return self.allowed("peering", Access.READ)

    def peering_write(self) -> bool:
        return self.allowed("peering", Access.WRITE)

    def keyring_read(self) -> bool:
        return self.allowed("keyring", Access.READ)

    def keyring_write(self) -> bool:
        return self.allowed("keyring", Access.WRITE)

    def service_read(self, name: str) -> bool:
        return self.allowed("service", Access.READ, name)

    def service_write(self, name: str) -> bool:
        return self.allowed("service", Access.WRITE, name)

    def service_read_any(self) -> bool:
        return self.allowed_on_any("service", Access.READ)

    def service_write_any(self) -> bool:
        return self.allowed_on_any("service", Access.WRITE)

    def intention_read(self, name: str) -> bool:
        return self.allowed(INTENTION, Access.READ, name)

    def intention_write(self, name: str) -> bool:
        return self.allowed(INTENTION, Access.WRITE, name)

    def node_read(self, name: str) -> bool:
        return self.allowed("node", Access.READ, name)

    def node_write(self, name: str) -> bool:
        return self.allowed("node", Access.WRITE, name)

    def node_read_any(self) -> bool:
        return self.allowed_on_any("node", Access.READ)

    def agent_read(self, name: str) -> bool:
        return self.allowed("agent", Access.READ, name)

    def agent_write(self, name: str) -> bool:
        return self.allowed("agent", Access.WRITE, name)

    def key_read(self, name: str) -> bool:
        return self.allowed("key", Access.READ, name)

    def key_list(self, name: str) -> bool:
        return self.allowed("key", Access.LIST, name)

    def key_write(self, name: str) -> bool:
        return self.allowed("key", Access.WRITE, name)

    def session_read(self, name: str) -> bool:
        return self.allowed("session", Access.READ, name)

    def session_write(self, name: str) -> bool:
        return self.allowed("session", Access.WRITE, name)

    def event_read(self, name: str) -> bool:
        return self.allowed("event", Access.READ, name)

    def event_write(self, name: str) -> bool:
        return self.allowed("event", Access.WRITE, name)

    def query_read(self, name: str) -> bool:
        return self.allowed("query", Access.READ, name)

    def query_write(self, name: str) -> bool:
        return self.allowed("query", Access.WRITE, name)

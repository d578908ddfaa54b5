"""Consul's ACL rules language: a document (HCL or JSON) becomes an immutable `PolicyRules`.

Reference: reference/acl.md §4.1. Two kinds of resource exist:

- *unnamed* (`acl`, `keyring`, `mesh`, `operator`, `peering`): `operator = "read"`;
- *named* (`agent`, `event`, `key`, `node`, `query`, `service`, `session`) and their `_prefix` forms:
  `service "web" { policy = "write" intentions = "read" }`. `service`/`service_prefix` rules may
  set `intentions`; when they do not, `read`/`write` imply intentions `read` and `deny` implies
  intentions `deny` (§4.2), so service:write alone never grants intention:write.

Levels are `read`, `write`, `deny`; `list` is accepted only on `key`/`key_prefix`. A document may
repeat a rule; repeats are kept and the authorizer merges them like rules of different policies
(deny > write > list > read). Every refusal is a `RulesError` naming the resource, the key, the
value, what would be accepted and, for HCL, the line. The messages start as Consul's do
(`Invalid service policy: ...`) so clients matching on Consul's text keep working.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meshfed.fsm.acl.errors import RulesError
from meshfed.fsm.acl.hcl import Block, Entry, Value, parse_hcl


class Access(enum.IntEnum):
    """A rule's level. The integer order is the merge precedence: deny > write > list > read."""

    READ = 1
    LIST = 2
    WRITE = 3
    DENY = 4

    def grants(self, wanted: Access) -> bool:
        """Whether a rule at this level allows a request for `wanted` (READ, LIST or WRITE)."""
        return self is not Access.DENY and wanted <= self


UNNAMED_RESOURCES = ("acl", "keyring", "mesh", "operator", "peering")
NAMED_RESOURCES = ("agent", "event", "key", "node", "query", "service", "session")
PREFIX_SUFFIX = "_prefix"
# `list` is only meaningful for keys (listing a KV subtree); Consul refuses it elsewhere.
LIST_RESOURCES = frozenset({"key"})
INTENTION_RESOURCES = frozenset({"service"})

_LEVEL_BY_WORD = {"read": Access.READ, "list": Access.LIST, "write": Access.WRITE, "deny": Access.DENY}
_ALL_KEYWORDS = sorted([*UNNAMED_RESOURCES, *NAMED_RESOURCES, *(r + PREFIX_SUFFIX for r in NAMED_RESOURCES)])


@dataclass(frozen=True)
class UnnamedRule:
    """`operator = "read"` and its kin."""

    resource: str
    access: Access
    # Where the rule was written; not part of equality: the same rule from two documents is equal.
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class NamedRule:
    """`service "web" { ... }` (prefix=False) or `service_prefix "w" { ... }` (prefix=True).

    `intentions` is what the document said (None when unset); `intention_access` is what applies.
    """

    resource: str
    name: str
    prefix: bool
    access: Access
    intentions: Access | None = None
    line: int | None = field(default=None, compare=False)

    @property
    def intention_access(self) -> Access | None:
        """The intention level this rule grants, per §4.2 (None for resources without intentions)."""
        if self.resource not in INTENTION_RESOURCES:
            return None
        if self.intentions is not None:
            return self.intentions
        return Access.DENY if self.access is Access.DENY else Access.READ


@dataclass(frozen=True)
class PolicyRules:
    """The parsed rules of one policy (or of one synthetic identity policy)."""

    unnamed: tuple[UnnamedRule, ...] = ()
    named: tuple[NamedRule, ...] = ()

    def with_rules(self, more: PolicyRules) -> PolicyRules:
        """These rules plus `more`, as if both documents were one (repeats merge in the authorizer)."""
        return PolicyRules(self.unnamed + more.unnamed, self.named + more.named)


def parse_rules(document: str) -> PolicyRules:
    """Parse a rules document; JSON when its first non-blank character is `{`, else HCL.

    Raises:
        RulesError: syntax errors (with line) and rules Consul refuses (with resource, key, value).
    """
    stripped = document.lstrip()
    if stripped.startswith("{"):
        return rules_from_entries(_json_entries(document))
    return rules_from_entries(parse_hcl(document))


class _JsonObject(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs: repeated keys stay, as repeated HCL blocks do."""


def _json_entries(document: str) -> tuple[Entry, ...]:
    try:
        decoded = json.loads(document, object_pairs_hook=_JsonObject)
    except json.JSONDecodeError as error:
        raise RulesError(f"invalid JSON: {error.msg} (column {error.colno})", error.lineno) from None
    return _entries_from_json(decoded, "the document")


def _entries_from_json(value: Any, where: str) -> tuple[Entry, ...]:
    """Map decoded JSON onto the HCL entry shape; JSON carries no lines, so line is 0 (unknown)."""
    if not isinstance(value, _JsonObject):
        raise RulesError(f"{where} must be a JSON object, got {_json_type(value)}")
    return tuple(Entry(key, (), _json_value(item, f'"{key}"'), 0) for key, item in value)


def _json_value(value: Any, where: str) -> Value:
    if isinstance(value, _JsonObject):
        return Block(_entries_from_json(value, where))
    if isinstance(value, list):
        return [_json_value(item, where) for item in value]
    if value is None:
        raise RulesError(f"{where} is null; give a string or an object")
    return value  # type: ignore[no-any-return]


def _json_type(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _line(entry: Entry) -> int | None:
    return entry.line or None


def _shown(entry_key: str, name: str | None) -> str:
    return entry_key if name is None else f"{entry_key} {json.dumps(name)}"


def rules_from_entries(entries: Iterable[Entry]) -> PolicyRules:
    """Validate parsed entries into `PolicyRules` (shared by the HCL and JSON paths)."""
    unnamed: list[UnnamedRule] = []
    named: list[NamedRule] = []
    for entry in entries:
        if entry.key in UNNAMED_RESOURCES:
            unnamed.append(_unnamed_rule(entry))
            continue
        resource, prefix = _split_prefix(entry.key)
        if resource not in NAMED_RESOURCES:
            raise RulesError(
                f"Unknown ACL resource {entry.key!r}; accepted: {', '.join(_ALL_KEYWORDS)}", _line(entry))
        named.extend(_named_rules(entry, resource, prefix))
    return PolicyRules(tuple(unnamed), tuple(named))


def _split_prefix(keyword: str) -> tuple[str, bool]:
    if keyword.endswith(PREFIX_SUFFIX):
        return keyword[: -len(PREFIX_SUFFIX)], True
    return keyword, False


def _unnamed_rule(entry: Entry) -> UnnamedRule:
    if entry.labels or not isinstance(entry.value, str):
        raise RulesError(
            f'Invalid {entry.key} policy: {entry.key} takes a plain level, like {entry.key} = "read"',
            _line(entry))
    access = _level(entry.value, resource=entry.key, field="policy", shown=entry.key, line=_line(entry))
    return UnnamedRule(entry.key, access, _line(entry))


def _named_rules(entry: Entry, resource: str, prefix: bool) -> list[NamedRule]:
    """`service "web" {..}` has the name as a label; `service { web {..} }` and JSON nest it."""
    if len(entry.labels) > 1:
        raise RulesError(
            f"{entry.key} takes one name, got {len(entry.labels)}: {' '.join(map(json.dumps, entry.labels))}",
            _line(entry))
    if entry.labels:
        return [_rule_body(entry, resource, prefix, entry.labels[0], entry.value, _line(entry))]
    rules: list[NamedRule] = []
    for block in entry.value if isinstance(entry.value, list) else [entry.value]:
        if not isinstance(block, Block):
            raise RulesError(
                f'Invalid {resource} policy: {entry.key} needs a name and a block, like '
                f'{entry.key} "name" {{ policy = "read" }}', _line(entry))
        for named_entry in block.entries:
            if named_entry.labels:
                raise RulesError(f"{entry.key} {json.dumps(named_entry.key)} takes one name, got more",
                                 _line(named_entry))
            line = _line(named_entry) or _line(entry)
            rules.append(_rule_body(entry, resource, prefix, named_entry.key, named_entry.value, line))
    return rules


def _rule_body(entry: Entry, resource: str, prefix: bool, name: str, body: Value, line: int | None) -> NamedRule:
    shown = _shown(entry.key, name)
    bodies = body if isinstance(body, list) else [body]
    fields: dict[str, Entry] = {}
    for one in bodies:
        if not isinstance(one, Block):
            raise RulesError(f'Invalid {resource} policy: {shown} needs a block, like {shown} {{ policy = "read" }}',
                             line)
        for body_entry in one.entries:
            allowed = ("policy", "intentions") if resource in INTENTION_RESOURCES else ("policy",)
            if body_entry.key not in allowed or body_entry.labels:
                raise RulesError(
                    f"Invalid {resource} policy: {shown} has unknown key {body_entry.key!r}; "
                    f"accepted: {', '.join(allowed)}", _line(body_entry) or line)
            if body_entry.key in fields:
                raise RulesError(f"Invalid {resource} policy: {shown} sets {body_entry.key} twice; keep one",
                                 _line(body_entry) or line)
            fields[body_entry.key] = body_entry
    policy = fields.get("policy")
    if policy is None:
        raise RulesError(f'Invalid {resource} policy: {shown} has no policy; add policy = "read", "write" or "deny"',
                         line)
    access = _level(policy.value, resource, "policy", shown, _line(policy) or line)
    intentions = None
    if "intentions" in fields:
        given = fields["intentions"]
        intentions = _level(given.value, resource, "intentions", shown, _line(given) or line, intentions=True)
    return NamedRule(resource, name, prefix, access, intentions, line)


def _level(value: Value, resource: str, field: str, shown: str, line: int | None, intentions: bool = False) -> Access:
    allow_list = resource in LIST_RESOURCES and not intentions
    words = ["read", "write", "deny", *(["list"] if allow_list else [])]
    kind = f"{resource} intentions" if intentions else resource
    if not isinstance(value, str) or value not in words:
        given = json.dumps(value) if isinstance(value, str | int | float | bool) else "a block"
        raise RulesError(
            f"Invalid {kind} policy: {shown} has {field} = {given}; accepted: {', '.join(map(json.dumps, words))}",
            line)
    return _LEVEL_BY_WORD[value]

"""The ACL tables of the state store: tokens, policies, roles and the bootstrap marker.

`StateStore` and `StoreWriter` (fsm/state.py) take these reads and writes as mixins, so the ACL
tables share the store's one lock, its per-table indexes and its snapshot, without state.py
growing past one concept. Reads return `(index, value)` like every other read.

Links are stored by ID; reads fill in the current names and drop links whose target is gone, as
Consul does (reference/acl.md §2.1), so renaming a policy shows on every token at once and a
deleted policy silently stops applying. Expiry is not judged here (the store reads no clock):
the endpoint and the resolver compare `expiration_time` with their own time (`expiry.py`), and the
leader deletes expired tokens through Raft.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from meshfed.fsm.acl.expiry import Expiring
from meshfed.fsm.acl.records import (
    ACLLink,
    ACLPolicy,
    ACLRole,
    ACLToken,
    anonymous_token,
    global_management_policy,
    policy_from_wire,
    role_from_wire,
    token_from_wire,
)

ACL_TABLES = ("acl_tokens", "acl_policies", "acl_roles")


class ACLTables:
    """The mutable ACL data of one `Tables` (fsm/tables.py); the built-ins exist from the start, at index 0."""

    def __init__(self) -> None:
        builtin_policy, anonymous = global_management_policy(), anonymous_token()
        self.tokens: dict[str, ACLToken] = {anonymous.accessor_id: anonymous}  # accessor -> token
        self.policies: dict[str, ACLPolicy] = {builtin_policy.id: builtin_policy}
        self.roles: dict[str, ACLRole] = {}
        # Raft index of the last bootstrap (0 = never); also the index a reset file must name.
        self.bootstrap_index = 0

    def named(self, links: tuple[ACLLink, ...], table: dict[str, Any]) -> tuple[ACLLink, ...]:
        return tuple(ACLLink(link.id, table[link.id].name) for link in links if link.id in table)

    def resolved_token(self, token: ACLToken | None) -> ACLToken | None:
        if token is None:
            return None
        return dataclasses.replace(
            token, policies=self.named(token.policies, self.policies), roles=self.named(token.roles, self.roles)
        )

    def resolved_role(self, role: ACLRole | None) -> ACLRole | None:
        if role is None:
            return None
        return dataclasses.replace(role, policies=self.named(role.policies, self.policies))

    def token_by_secret(self, secret: str) -> ACLToken | None:
        return next((t for t in self.tokens.values() if t.secret_id == secret), None)

    def policy_by_name(self, name: str) -> ACLPolicy | None:
        return next((p for p in self.policies.values() if p.name == name), None)

    def role_by_name(self, name: str) -> ACLRole | None:
        return next((r for r in self.roles.values() if r.name == name), None)

    def rows(self) -> dict[str, list[Any]]:
        """Every row, per table, in canonical (key) order."""
        return {
            "acl_tokens": [self.tokens[key] for key in sorted(self.tokens)],
            "acl_policies": [self.policies[key] for key in sorted(self.policies)],
            "acl_roles": [self.roles[key] for key in sorted(self.roles)],
        }


class ACLReads:
    """Read methods of `StateStore` (it provides `_lock` and `_tables` with `.acl`/`.table_index`)."""

    _lock: threading.Lock
    _tables: Any

    def _acl_read(self, table: str, read: Callable[[ACLTables], Any]) -> tuple[int, Any]:
        with self._lock:
            return self._tables.table_index[table], read(self._tables.acl)

    def acl_token_by_secret(self, secret: str) -> tuple[int, ACLToken | None]:
        return self._acl_read("acl_tokens", lambda acl: acl.resolved_token(acl.token_by_secret(secret)))

    def acl_token_by_accessor(self, accessor: str) -> tuple[int, ACLToken | None]:
        return self._acl_read("acl_tokens", lambda acl: acl.resolved_token(acl.tokens.get(accessor)))

    def acl_tokens(self, policy_id: str | None = None, role_id: str | None = None) -> tuple[int, list[ACLToken]]:
        """Sorted by AccessorID; `policy_id`/`role_id` keep the tokens that link to them directly."""

        def read(acl: ACLTables) -> list[ACLToken]:
            found = []
            for accessor in sorted(acl.tokens):
                token = acl.resolved_token(acl.tokens[accessor])
                assert token is not None
                if policy_id is not None and all(link.id != policy_id for link in token.policies):
                    continue
                if role_id is not None and all(link.id != role_id for link in token.roles):
                    continue
                found.append(token)
            return found

        return self._acl_read("acl_tokens", read)

    def acl_expiring_tokens(self) -> tuple[int, list[Expiring]]:
        """The tokens that have an expiration time, without resolving links: the leader's reaper
        scans this every second, so it must stay cheap however many tokens never expire."""
        return self._acl_read("acl_tokens", lambda acl: [
            Expiring(token.accessor_id, token.expiration_time, token.local)
            for token in acl.tokens.values() if token.expiration_time
        ])

    def acl_policy(self, policy_id: str) -> tuple[int, ACLPolicy | None]:
        return self._acl_read("acl_policies", lambda acl: acl.policies.get(policy_id))

    def acl_policy_by_name(self, name: str) -> tuple[int, ACLPolicy | None]:
        return self._acl_read("acl_policies", lambda acl: acl.policy_by_name(name))

    def acl_policies(self, ids: list[str] | None = None) -> tuple[int, list[ACLPolicy]]:
        """Sorted by ID; with `ids`, only those that exist."""
        return self._acl_read("acl_policies", lambda acl: [
            acl.policies[key] for key in sorted(acl.policies) if ids is None or key in ids
        ])

    def acl_role(self, role_id: str) -> tuple[int, ACLRole | None]:
        return self._acl_read("acl_roles", lambda acl: acl.resolved_role(acl.roles.get(role_id)))

    def acl_role_by_name(self, name: str) -> tuple[int, ACLRole | None]:
        return self._acl_read("acl_roles", lambda acl: acl.resolved_role(acl.role_by_name(name)))

    def acl_roles(self, ids: list[str] | None = None) -> tuple[int, list[ACLRole]]:
        return self._acl_read("acl_roles", lambda acl: [
            acl.resolved_role(acl.roles[key]) for key in sorted(acl.roles) if ids is None or key in ids
        ])

    def acl_bootstrap_state(self) -> tuple[int, dict[str, Any]]:
        return self._acl_read("acl_tokens", lambda acl: {
            "bootstrapped": acl.bootstrap_index > 0, "reset_index": acl.bootstrap_index,
        })


class ACLWrites:
    """Lookups and mutations of `StoreWriter` (it provides `_t` and `_bump`); records are stored
    exactly as given, links by ID."""

    _t: Any
    _bump: Callable[[str, int], None]

    @property
    def _acl(self) -> ACLTables:
        return self._t.acl

    def acl_token(self, accessor: str) -> ACLToken | None:
        return self._acl.tokens.get(accessor)

    def acl_token_by_secret(self, secret: str) -> ACLToken | None:
        return self._acl.token_by_secret(secret)

    def acl_policy(self, policy_id: str) -> ACLPolicy | None:
        return self._acl.policies.get(policy_id)

    def acl_policy_by_name(self, name: str) -> ACLPolicy | None:
        return self._acl.policy_by_name(name)

    def acl_role(self, role_id: str) -> ACLRole | None:
        return self._acl.roles.get(role_id)

    def acl_role_by_name(self, name: str) -> ACLRole | None:
        return self._acl.role_by_name(name)

    def acl_bootstrap_index(self) -> int:
        return self._acl.bootstrap_index

    def put_acl_token(self, token: ACLToken, index: int) -> None:
        self._acl.tokens[token.accessor_id] = token
        self._bump("acl_tokens", index)

    def delete_acl_token(self, accessor: str, index: int) -> None:
        if self._acl.tokens.pop(accessor, None) is not None:
            self._bump("acl_tokens", index)

    def put_acl_policy(self, policy: ACLPolicy, index: int) -> None:
        self._acl.policies[policy.id] = policy
        self._bump("acl_policies", index)

    def delete_acl_policy(self, policy_id: str, index: int) -> None:
        if self._acl.policies.pop(policy_id, None) is not None:
            self._bump("acl_policies", index)

    def put_acl_role(self, role: ACLRole, index: int) -> None:
        self._acl.roles[role.id] = role
        self._bump("acl_roles", index)

    def delete_acl_role(self, role_id: str, index: int) -> None:
        if self._acl.roles.pop(role_id, None) is not None:
            self._bump("acl_roles", index)

    def set_acl_bootstrap_index(self, index: int) -> None:
        self._acl.bootstrap_index = index
        self._bump("acl_tokens", index)


# ---- snapshot ---------------------------------------------------------------------------------

_FROM_WIRE = {"acl_tokens": token_from_wire, "acl_policies": policy_from_wire, "acl_roles": role_from_wire}
_RECORD = {"acl_tokens": ACLToken, "acl_policies": ACLPolicy, "acl_roles": ACLRole}


def acl_export(acl: ACLTables, to_wire: Callable[[Any], Any]) -> dict[str, Any]:
    exported: dict[str, Any] = {table: [to_wire(row) for row in rows] for table, rows in acl.rows().items()}
    exported["acl_bootstrap_index"] = acl.bootstrap_index
    return exported


def acl_load(data: dict[str, Any], typed: Callable[[Any, type], Any]) -> ACLTables:
    """Tables from `acl_export` output; a snapshot without ACL tables (older) keeps the built-ins."""
    acl = ACLTables()
    for table, from_wire in _FROM_WIRE.items():
        rows = data.get(table)
        if rows is None:
            continue
        if not isinstance(rows, list):
            raise ValueError(f"snapshot table {table!r} must be a list, got {type(rows).__name__}")
        target: dict[str, Any] = {}
        for wire in rows:
            record = typed(from_wire(wire), _RECORD[table])
            target[record.accessor_id if table == "acl_tokens" else record.id] = record
        setattr(acl, table.removeprefix("acl_"), target)
    bootstrap_index = data.get("acl_bootstrap_index", 0)
    if isinstance(bootstrap_index, bool) or not isinstance(bootstrap_index, int) or bootstrap_index < 0:
        raise ValueError(f"snapshot acl_bootstrap_index is {bootstrap_index!r}, want an integer >= 0")
    acl.bootstrap_index = bootstrap_index
    return acl

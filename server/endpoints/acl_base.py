"""What every ACL endpoint handler shares: its dependencies, re-targeting to the primary,
resolving link names against the state, and judging expiry with this server's clock."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from meshfed.fsm.acl.records import RESERVED_ID_PREFIX, ACLLink, ACLToken
from meshfed.fsm.acl.store import ACL_TABLES
from meshfed.fsm.consul_formats.durations import format_duration, parse_duration
from meshfed.fsm.consul_formats.timestamps import format_rfc3339, parse_rfc3339
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid, not_found
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.endpoints import acl_shapes as shapes
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter

MIN_EXPIRATION_TTL = 60.0  # Consul's acl.token_min_expiration_ttl default (1m)
MAX_EXPIRATION_TTL = 24 * 3600.0  # token_max_expiration_ttl default (24h)


def permission_denied(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied: {message}")


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower() and len(text) == 36
    except ValueError:
        return False


def new_id() -> str:
    """A random UUID outside the reserved built-in range."""
    while True:
        candidate = str(uuid.uuid4())
        if not candidate.startswith(RESERVED_ID_PREFIX):
            return candidate


def object_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("invalid request: body must be a map")
    return body


class ACLBase:
    """The dependencies and helpers of the ACL handlers; `now` is injectable so tests can expire tokens."""

    def __init__(
        self,
        *,
        datacenter: str,
        primary_datacenter: str,
        state: StateStore,
        raft: Proposer,
        router: RequestRouter,
        queries: Queries,
        data_dir: str | None = None,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        min_expiration_ttl: float = MIN_EXPIRATION_TTL,
        max_expiration_ttl: float = MAX_EXPIRATION_TTL,
    ) -> None:
        self._datacenter = datacenter
        self._primary = primary_datacenter
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries
        self._data_dir = data_dir
        self._now = now
        self._expiration_bounds = (min_expiration_ttl, max_expiration_ttl)

    @property
    def datacenter(self) -> str:
        return self._datacenter

    # ---- helpers ------------------------------------------------------------------------------

    def _to_primary(self, header: RequestHeader) -> RequestHeader:
        return dataclasses.replace(header, datacenter=self._primary)

    def _meta(self) -> QueryMeta:
        return self._queries.meta(self._state.index(*ACL_TABLES))

    def _live(self, token: ACLToken | None) -> ACLToken | None:
        """None for an expired token: Consul reads those as not found (§2.1)."""
        if token is None or not token.expiration_time:
            return token
        return token if parse_rfc3339(token.expiration_time) > self._now() else None

    def _policy_links(self, refs: list[tuple[str, str]]) -> tuple[ACLLink, ...]:
        links = []
        for policy_id, name in refs:
            if policy_id:
                if self._state.acl_policy(policy_id)[1] is None:
                    raise invalid(f'No such ACL policy with ID "{policy_id}"')
                links.append(ACLLink(policy_id))
            else:
                policy = self._state.acl_policy_by_name(name)[1]
                if policy is None:
                    raise invalid(f'No such ACL policy with name "{name}"')
                links.append(ACLLink(policy.id))
        return tuple(links)

    def _role_links(self, refs: list[tuple[str, str]]) -> tuple[ACLLink, ...]:
        links = []
        for role_id, name in refs:
            role = self._state.acl_role(role_id)[1] if role_id else self._state.acl_role_by_name(name)[1]
            if role is None:
                raise invalid(f'No such ACL role with ID "{role_id}"' if role_id else f'No such ACL role with name "{name}"')
            links.append(ACLLink(role.id))
        return tuple(links)

    def _token_reply(self, accessor: str) -> dict[str, Any]:
        token = self._state.acl_token_by_accessor(accessor)[1]
        if token is None:  # deleted between the write and this read; report what Consul would
            raise not_found(f'Cannot find token "{accessor}"')
        return shapes.token_json(token)

    def _expiration(self, raw: dict[str, Any], created: datetime.datetime, bounded: bool = True) -> str | None:
        """ExpirationTTL turned into an ExpirationTime (a given ExpirationTime is kept as written).
        On create (`bounded`) it must lie between acl.token_min_expiration_ttl and
        token_max_expiration_ttl after CreateTime (Consul's tokenSetInternal, with its texts); an
        update only compares it with the stored one."""
        given_time = shapes.text_field(raw, "ExpirationTime", "Token")
        ttl = shapes.text_field(raw, "ExpirationTTL", "Token")
        if given_time and ttl:
            raise invalid("Token Expiration TTL and Expiration Time cannot both be set")
        if ttl:
            try:
                seconds = parse_duration(ttl)
            except ValueError as exc:
                raise invalid(f"Token decoding failed: ExpirationTTL: {exc}") from None
            expires = created + datetime.timedelta(seconds=seconds)
        elif given_time:
            try:
                expires = parse_rfc3339(given_time)
            except ValueError:
                raise invalid(f"Token decoding failed: ExpirationTime {given_time!r} is not an RFC 3339 time") from None
            if bounded and expires < created:
                raise invalid("ExpirationTime cannot be before CreateTime")
        else:
            return None
        if not bounded:
            return given_time or format_rfc3339(expires, microseconds=True)
        lifetime = (expires - created).total_seconds()
        shortest, longest = self._expiration_bounds
        if lifetime > longest:
            raise invalid(f"ExpirationTime cannot be more than {format_duration(longest)} in the future "
                          f"(was {format_duration(lifetime)})")
        if lifetime < shortest:
            raise invalid(f"ExpirationTime cannot be less than {format_duration(shortest)} in the future "
                          f"(was {format_duration(lifetime)})")
        return given_time or format_rfc3339(expires, microseconds=True)

    def _check_new_id(self, value: str, column: str) -> None:
        if not is_uuid(value):
            raise invalid(f"Invalid Token: {column} is not a valid UUID")
        if value.startswith(RESERVED_ID_PREFIX):
            raise invalid(f"Invalid Token: UUIDs with the prefix {RESERVED_ID_PREFIX} are reserved")
        if self._state.acl_token_by_accessor(value)[1] or self._state.acl_token_by_secret(value)[1]:
            raise invalid(f"Invalid Token: {column} is already in use")

"""Token secret -> `Identity` (accessor + authorizer), from the local state store, cached per server.

Reference: reference/acl.md §6.1 (servers resolve from their own store), §2.4 (built-ins), §2.5
(identities), §4.3 (policies limited to datacenters). A resolution goes:

1. the configured `acl.tokens.initial_management` secret is a management token. Consul's primary
   leader writes that token into the store at start; recognising it here keeps it usable before
   (and whether or not) the token table holds it;
2. the anonymous secret is the anonymous token: its stored policies if the store has it, else none;
3. any other secret must be in the store and unexpired, else `ACL not found` (403). A follower
   that does not hold the secret first catches up with its leader (`use_catch_up`; the why and
   the cost: server/requests/catch_up.py): a token created an instant ago on the leader works
   here as soon as its create was acknowledged;
4. the token's policies, its roles' policies and the synthetic policies of every identity that
   applies in this datacenter are merged into one `Authorizer`; the global-management policy
   makes it a management authorizer.

Cache: one entry per secret, tagged with the index of the three ACL tables when it was built. Any
write to tokens, policies or roles changes that index, so the next request rebuilds: an edited
policy or a deleted token takes effect at once, never after a TTL. Expiry is checked on every hit,
because time passes without a table changing. On a secondary the tables are the replicated copies,
so a policy edited in the primary takes effect here as soon as replication applies it.

Secondaries (§6.1, §6.2; `resolve_async`, wired with a `remote` only outside the primary): a
token this server does not hold, while tokens are not replicated (token replication off, or
nothing replicated yet), is asked of the primary and cached for `acl.token_ttl` (the asking and
the keeping: server/acl/primary_tokens.py). Policies and roles always come from the local,
replicated tables. When the primary cannot be reached, `acl.down_policy` decides:
- `extend-cache`: the token resolved before keeps its identity, however old; unknown -> deny all;
- `async-cache`: the same, but an old entry is served at once and refreshed in the background;
- `deny`: deny all (an old entry is used only within its TTL); `allow`: allow all.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import grpc

from meshfed.fsm.acl import (
    ANONYMOUS_ACCESSOR_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
    Authorizer,
    DefaultPolicy,
    PolicyRules,
    RulesError,
    node_identity_rules,
    parse_rules,
    service_identity_rules,
)
from meshfed.fsm.consul_formats.timestamps import parse_rfc3339
from meshfed.rpc.errors import RPCError
from meshfed.server.acl.down_policy import WhenDown
from meshfed.server.acl.primary_tokens import ACL_NOT_FOUND, PrimaryTokens
from meshfed.server.acl.token import ANONYMOUS_SECRET
from meshfed.server.config.settings import ACLConfig

ACL_TABLES = ("acl_tokens", "acl_policies", "acl_roles")
# Bounds the cache so a client cycling random secrets cannot grow it without limit (Consul: 10240).
MAX_CACHED_IDENTITIES = 10240
# uuid5 namespace for the accessor we show for the configured initial-management secret when the
# store does not hold its token yet: stable across servers, and not the secret itself.
_INITIAL_MANAGEMENT_NAMESPACE = uuid.UUID("8f0f5a2e-58a4-4c53-9d5b-5b9d0a6f1c01")


class _Link(Protocol):
    @property
    def id(self) -> str: ...


class _ServiceIdentity(Protocol):
    @property
    def service_name(self) -> str: ...

    @property
    def datacenters(self) -> Sequence[str]: ...


class _NodeIdentity(Protocol):
    @property
    def node_name(self) -> str: ...

    @property
    def datacenter(self) -> str: ...


class TokenRecord(Protocol):
    """The fields of `fsm.acl.records.ACLToken` the resolver reads."""

    @property
    def accessor_id(self) -> str: ...

    @property
    def policies(self) -> Sequence[_Link]: ...

    @property
    def roles(self) -> Sequence[_Link]: ...

    @property
    def service_identities(self) -> Sequence[_ServiceIdentity]: ...

    @property
    def node_identities(self) -> Sequence[_NodeIdentity]: ...

    @property
    def expiration_time(self) -> str | None: ...

    @property
    def local(self) -> bool: ...


# Waits until this server has applied what its leader acknowledged; False if it could not tell.
CatchUpWait = Callable[[], Awaitable[bool]]

# secret -> the primary's token (None: the primary says `ACL not found`); raises when unreachable.
RemoteResolve = Callable[[str], Awaitable[TokenRecord | None]]


class RoleRecord(Protocol):
    @property
    def policies(self) -> Sequence[_Link]: ...

    @property
    def service_identities(self) -> Sequence[_ServiceIdentity]: ...

    @property
    def node_identities(self) -> Sequence[_NodeIdentity]: ...


class PolicyRecord(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def rules(self) -> str: ...

    @property
    def datacenters(self) -> Sequence[str]: ...


class ACLStateReader(Protocol):
    """The state-store reads of the ACL contract (issue #9) that resolution needs."""

    def index(self, *tables: str) -> int: ...

    def acl_token_by_secret(self, secret: str) -> tuple[int, TokenRecord | None]: ...

    def acl_policies(self, ids: Iterable[str] | None = None) -> tuple[int, Sequence[PolicyRecord]]: ...

    def acl_roles(self, ids: Iterable[str] | None = None) -> tuple[int, Sequence[RoleRecord]]: ...


class ResolveObserver(Protocol):
    def observe_acl_resolve(self, seconds: float, cache_hit: bool) -> None: ...


@dataclass(frozen=True)
class Identity:
    """Who a request is (by AccessorID: the secret never leaves the resolver) and what it may do."""

    accessor_id: str
    authorizer: Authorizer


@dataclass(frozen=True)
class _Cached:
    tables_index: int
    expires_at: float | None  # unix seconds; None for tokens that do not expire
    identity: Identity


def state_reader(state: object) -> ACLStateReader | None:
    """The store as the resolver's reader, or None while the store has no ACL tables: then only
    the configured initial-management secret and the anonymous token resolve."""
    return cast(ACLStateReader, state) if hasattr(state, "acl_token_by_secret") else None


def _expiry(token: TokenRecord) -> float | None:
    if not token.expiration_time:
        return None
    return parse_rfc3339(token.expiration_time).timestamp()


class ACLResolver:
    """Resolves secrets for one server. Thread-safe enough for asyncio: no awaits inside."""

    def __init__(
        self,
        state: ACLStateReader | None,
        config: ACLConfig,
        datacenter: str,
        clock: Callable[[], float] = time.time,
        observer: ResolveObserver | None = None,
    ) -> None:
        """`state` is None while the store has no ACL tables: then only the configured
        initial-management secret and the anonymous token resolve."""
        self._state = state
        self._default_policy = DefaultPolicy(config.default_policy)
        self._initial_management = config.tokens.initial_management
        self._datacenter = datacenter
        self._clock = clock
        self._observer = observer
        self._cache: dict[str, _Cached] = {}
        self._down_policy = config.down_policy
        self._token_ttl = config.token_ttl
        self._replicates_tokens = config.enable_token_replication
        self._primary: PrimaryTokens[TokenRecord] | None = None
        self._catch_up: CatchUpWait | None = None

    def use_catch_up(self, wait: CatchUpWait) -> None:
        """Followers: how to wait until the writes the leader acknowledged are applied here, before
        refusing a secret this server does not hold (server/requests/catch_up.py)."""
        self._catch_up = wait

    def use_primary(self, remote: RemoteResolve) -> None:
        """Secondaries: where to ask about tokens not held here."""
        self._primary = PrimaryTokens(remote, down_policy=self._down_policy, token_ttl=self._token_ttl,
                                      clock=self._clock)

    @property
    def default_policy(self) -> DefaultPolicy:
        return self._default_policy

    def resolve(self, secret: str) -> Identity:
        """The identity of `secret` ("" means anonymous).

        Raises:
            RPCError: PERMISSION_DENIED `ACL not found` for an unknown or expired secret.
        """
        started = time.perf_counter()
        secret = secret or ANONYMOUS_SECRET
        tables_index = self._state.index(*ACL_TABLES) if self._state is not None else 0
        cached = self._cache.get(secret)
        hit = cached is not None and cached.tables_index == tables_index
        try:
            if cached is not None and hit:
                if cached.expires_at is not None and cached.expires_at <= self._clock():
                    raise RPCError(grpc.StatusCode.PERMISSION_DENIED, ACL_NOT_FOUND)
                return cached.identity
            entry = self._build(secret, tables_index)
            if len(self._cache) >= MAX_CACHED_IDENTITIES:
                self._cache.clear()  # rare; rebuilding is cheap and this keeps the bound simple
            self._cache[secret] = entry
            return entry.identity
        finally:
            if self._observer is not None:
                self._observer.observe_acl_resolve(time.perf_counter() - started, hit)

    # ---- secondaries: tokens held by the primary only ---------------------------------------------

    async def resolve_async(self, secret: str) -> Identity:
        """`resolve`, asking the primary about a token this secondary does not hold (see the module
        docstring); in the primary, or for a token held here, exactly `resolve`."""
        secret = secret or ANONYMOUS_SECRET
        if self._primary is not None and not self._resolves_locally(secret):
            return await self._resolve_remote(secret)
        try:
            return self.resolve(secret)
        except RPCError:
            if self._catch_up is None or secret == ANONYMOUS_SECRET or self._stored_token(secret) is not None:
                raise  # expired, or nothing a catch-up could change
        # Not held here: perhaps written an instant ago and not applied here yet.
        await self._catch_up()
        return self.resolve(secret)

    def _resolves_locally(self, secret: str) -> bool:
        if secret == ANONYMOUS_SECRET or (self._initial_management and secret == self._initial_management):
            return True
        token = self._stored_token(secret)
        if token is not None:
            # Without token replication, global tokens here are leftovers: the primary decides.
            return bool(getattr(token, "local", False)) or self._replicates_tokens
        # Consul's rule: with token replication, ask the primary only while nothing has been
        # replicated yet (the table's index is part of the Raft state, so every server agrees).
        return self._replicates_tokens and self._state is not None and self._state.index("acl_tokens") > 0

    async def _resolve_remote(self, secret: str) -> Identity:
        assert self._primary is not None
        token, down = await self._primary.token(secret)
        if down is None or down is WhenDown.CACHED:
            assert token is not None
            return self._remote_identity(token)
        # `down_policy` for a token the primary could not be asked about.
        accessor = token.accessor_id if token is not None else ""
        if down is WhenDown.ALLOW_ALL:
            return Identity(accessor, Authorizer.for_management(self._default_policy))
        return Identity(accessor, Authorizer.from_rules([], DefaultPolicy.DENY))

    def _remote_identity(self, token: TokenRecord) -> Identity:
        """The identity of a token the primary vouched for, built on the local (replicated) policies."""
        expires_at = _expiry(token)
        if expires_at is not None and expires_at <= self._clock():
            raise RPCError(grpc.StatusCode.PERMISSION_DENIED, ACL_NOT_FOUND)
        policy_ids, identity_rules = self._expand(token)
        return Identity(token.accessor_id, self._authorizer_of(policy_ids, identity_rules))

    # ---- building ----------------------------------------------------------------------------

    def _build(self, secret: str, tables_index: int) -> _Cached:
        if self._initial_management and secret == self._initial_management:
            token = self._stored_token(secret)
            accessor = token.accessor_id if token is not None else str(
                uuid.uuid5(_INITIAL_MANAGEMENT_NAMESPACE, secret))
            return _Cached(tables_index, None, Identity(accessor, Authorizer.for_management(self._default_policy)))
        token = self._stored_token(secret)
        if token is None:
            if secret == ANONYMOUS_SECRET:
                # No anonymous token stored (yet): it has no policies, so the default policy decides.
                return _Cached(tables_index, None, Identity(ANONYMOUS_ACCESSOR_ID, self._authorizer_of([], [])))
            raise RPCError(grpc.StatusCode.PERMISSION_DENIED, ACL_NOT_FOUND)
        expires_at = _expiry(token)
        if expires_at is not None and expires_at <= self._clock():
            raise RPCError(grpc.StatusCode.PERMISSION_DENIED, ACL_NOT_FOUND)
        policy_ids, identity_rules = self._expand(token)
        return _Cached(tables_index, expires_at, Identity(token.accessor_id,
                                                          self._authorizer_of(policy_ids, identity_rules)))

    def _stored_token(self, secret: str) -> TokenRecord | None:
        if self._state is None:
            return None
        return self._state.acl_token_by_secret(secret)[1]

    def _expand(self, token: TokenRecord) -> tuple[list[str], list[PolicyRules]]:
        """Policy IDs and identity rules of the token and of its roles (§2.3)."""
        policy_ids = [link.id for link in token.policies]
        rules = self._identity_rules(token)
        role_ids = [link.id for link in token.roles]
        if role_ids and self._state is not None:
            for role in self._state.acl_roles(role_ids)[1]:
                policy_ids.extend(link.id for link in role.policies)
                rules.extend(self._identity_rules(role))
        return policy_ids, rules

    def _identity_rules(self, holder: TokenRecord | RoleRecord) -> list[PolicyRules]:
        rules = [
            service_identity_rules(identity.service_name)
            for identity in holder.service_identities
            if not identity.datacenters or self._datacenter in identity.datacenters
        ]
        rules.extend(
            node_identity_rules(identity.node_name)
            for identity in holder.node_identities
            if identity.datacenter == self._datacenter
        )
        return rules

    def _authorizer_of(self, policy_ids: list[str], identity_rules: list[PolicyRules]) -> Authorizer:
        if GLOBAL_MANAGEMENT_POLICY_ID in policy_ids:
            return Authorizer.for_management(self._default_policy)
        policies = self._state.acl_policies(policy_ids)[1] if policy_ids and self._state is not None else []
        merged = list(identity_rules)
        for policy in policies:
            if policy.datacenters and self._datacenter not in policy.datacenters:
                continue  # a policy limited to other DCs is as if absent here (§2.2)
            try:
                merged.append(parse_rules(policy.rules))
            except RulesError:
                # Rules are validated on write; one that no longer parses (a newer writer) grants nothing.
                continue
        return Authorizer.from_rules(merged, self._default_policy)


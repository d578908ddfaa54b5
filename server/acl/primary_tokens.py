"""A secondary's copy of the tokens only the primary holds (reference/acl.md §6.1, §6.2).

The resolver (server/acl/resolver.py) asks here about a secret it cannot resolve from its own
store. The primary's answer is kept for `acl.token_ttl`; past that it is asked again, and when it
cannot be reached `acl.down_policy` (server/acl/down_policy.py) decides whether the token resolved
before still counts. `async-cache` answers with the old token at once and refreshes behind, one
refresh per secret at a time. A token the primary no longer knows is dropped, so it is `ACL not
found` from then on, whatever the policy.

Only the asking and the keeping live here: what a token grants is built by the resolver on the
local, replicated policies, so this is generic in the token's type.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from meshfed.rpc.errors import RPCError
from meshfed.server.acl.down_policy import WhenDown, serves_stale_first, when_down

log = logging.getLogger(__name__)

# Consul's text for a secret no server knows; the resolver raises it too (and re-exports it).
ACL_NOT_FOUND = "ACL not found"

T = TypeVar("T")


@dataclass(frozen=True)
class _Remote(Generic[T]):
    token: T
    fetched_at: float  # the clock's time of the primary's answer


class _PrimaryDown(Exception):
    """The primary could not answer a token resolution; `down_policy` decides."""


class PrimaryTokens(Generic[T]):
    def __init__(self, remote: Callable[[str], Awaitable[T | None]], *, down_policy: str, token_ttl: float,
                 clock: Callable[[], float]) -> None:
        """`remote`: secret -> the primary's token (None: the primary says `ACL not found`);
        raises when the primary cannot be reached."""
        self._remote = remote
        self._down_policy = down_policy
        self._token_ttl = token_ttl
        self._clock = clock
        self._cache: dict[str, _Remote[T]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._primary_down = False

    async def token(self, secret: str) -> tuple[T | None, WhenDown | None]:
        """(the token, None) when the primary vouched for it, now or within the policy's
        reuse; (the token resolved before or None, `down_policy`'s decision) when the primary
        cannot be reached. A `WhenDown.CACHED` decision always comes with that token.

        Raises:
            RPCError: PERMISSION_DENIED `ACL not found` when the primary does not know the secret.
        """
        cached = self._cache.get(secret)
        if cached is not None and self._clock() - cached.fetched_at < self._token_ttl:
            return cached.token, None
        if cached is not None and serves_stale_first(self._down_policy):
            if secret not in self._refreshing:
                task = asyncio.ensure_future(self._refresh_quietly(secret))
                self._refreshing[secret] = task
                task.add_done_callback(lambda _: self._refreshing.pop(secret, None))
            return cached.token, None
        try:
            await self._refresh(secret, raise_down=True)
        except _PrimaryDown:
            return (cached.token if cached is not None else None), when_down(self._down_policy, cached is not None)
        return self._cache[secret].token, None

    async def _refresh_quietly(self, secret: str) -> None:
        """async-cache's background refresh: a token the primary no longer knows is dropped, an
        unreachable primary keeps the old entry."""
        try:
            await self._refresh(secret)
        except RPCError:
            pass

    async def _refresh(self, secret: str, raise_down: bool = False) -> None:
        """Ask the primary; ACL not found drops the cache entry and raises."""
        try:
            token = await self._remote(secret)
        except RPCError as exc:
            if self._down(exc, raise_down):
                raise _PrimaryDown from exc
            return
        except Exception as exc:  # a transport failure the dialer did not wrap
            if self._down(exc, raise_down):
                raise _PrimaryDown from exc
            return
        if self._primary_down:
            log.info("acl: the primary answers token resolution again")
            self._primary_down = False
        if token is None:
            self._cache.pop(secret, None)
            raise RPCError(grpc.StatusCode.PERMISSION_DENIED, ACL_NOT_FOUND)
        self._cache[secret] = _Remote(token, self._clock())

    def _down(self, exc: Exception, raise_down: bool) -> bool:
        if not self._primary_down:
            log.warning("acl: cannot resolve tokens with the primary, down_policy %s applies: %s",
                        self._down_policy, exc)
            self._primary_down = True
        return raise_down

"""A secondary's copy of the primary's tokens (server/acl/primary_tokens.py), on its own: any token
type, a fake primary and a hand-moved clock. The resolver's use of it, with real policies, is in
test_acl_down_policy.py."""

from __future__ import annotations

import asyncio

import pytest

from meshfed.rpc.errors import RPCError, unavailable
from meshfed.server.acl.down_policy import WhenDown
from meshfed.server.acl.primary_tokens import ACL_NOT_FOUND, PrimaryTokens


class Primary:
    def __init__(self) -> None:
        self.tokens = {"s-web": "web"}
        self.down = False
        self.calls = 0

    async def __call__(self, secret: str) -> str | None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise unavailable("No path to datacenter: dc1")
        return self.tokens.get(secret)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def tokens(down_policy: str) -> tuple[PrimaryTokens[str], Primary, Clock]:
    primary, clock = Primary(), Clock()
    return PrimaryTokens(primary, down_policy=down_policy, token_ttl=30.0, clock=clock), primary, clock


def test_async_cache_runs_one_background_refresh_per_secret() -> None:
    cache, primary, clock = tokens("async-cache")

    async def scenario() -> None:
        assert await cache.token("s-web") == ("web", None)
        clock.now += 31
        primary.tokens["s-web"] = "web2"
        answers = [await cache.token("s-web") for _ in range(5)]
        assert answers == [("web", None)] * 5, "the old token at once, each time"
        for _ in range(5):
            await asyncio.sleep(0)
        assert primary.calls == 2, "five stale answers, one refresh"
        assert await cache.token("s-web") == ("web2", None)

    asyncio.run(scenario())


@pytest.mark.parametrize("down_policy,known,unknown", [
    ("extend-cache", ("web", WhenDown.CACHED), (None, WhenDown.DENY_ALL)),
    ("deny", ("web", WhenDown.DENY_ALL), (None, WhenDown.DENY_ALL)),
    ("allow", ("web", WhenDown.ALLOW_ALL), (None, WhenDown.ALLOW_ALL)),
])
def test_an_unreachable_primary_hands_the_decision_with_the_old_token(
        down_policy: str, known: tuple[str, WhenDown], unknown: tuple[None, WhenDown]) -> None:
    cache, primary, clock = tokens(down_policy)
    asyncio.run(cache.token("s-web"))
    primary.down = True
    clock.now += 31
    assert asyncio.run(cache.token("s-web")) == known
    assert asyncio.run(cache.token("s-other")) == unknown


def test_a_secret_the_primary_forgot_is_acl_not_found_and_dropped() -> None:
    cache, primary, clock = tokens("extend-cache")
    asyncio.run(cache.token("s-web"))
    del primary.tokens["s-web"]
    clock.now += 31
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):
        asyncio.run(cache.token("s-web"))
    primary.down = True
    assert asyncio.run(cache.token("s-web")) == (None, WhenDown.DENY_ALL), "nothing kept to extend"

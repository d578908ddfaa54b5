"""A secondary's token resolution with the primary, and `down_policy` (reference/acl.md §6.1,
§6.2): a fake primary (answers, says "ACL not found", or is unreachable), an injected clock, and
the resolver's own in-memory store from test_acl_resolver."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import pytest

from meshfed.fsm.acl.records import ACLLink as Link
from meshfed.fsm.acl.records import ACLToken as Token
from meshfed.rpc.errors import RPCError, unavailable
from meshfed.server.acl.down_policy import DOWN_POLICIES, WhenDown, when_down
from meshfed.server.acl.resolver import ACL_NOT_FOUND, ACLResolver
from meshfed.server.config.settings import ACLConfig
from tests.unit.test_acl_resolver import JAN_1_2030, WEB_READ, Clock, FakeACLStore

WEB = Token("a-web", "s-web", policies=(Link("p-web"),))


class Primary:
    """The remote resolve: answers from `tokens`, or raises UNAVAILABLE while `down`."""

    def __init__(self, *tokens: Token) -> None:
        self.tokens = {t.secret_id: t for t in tokens}
        self.down = False
        self.calls = 0

    async def __call__(self, secret: str) -> Token | None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise unavailable("No path to datacenter: dc1")
        return self.tokens.get(secret)


def secondary(down_policy: str, primary: Primary, store: FakeACLStore | None = None, clock: Clock | None = None,
              token_replication: bool = False) -> tuple[ACLResolver, FakeACLStore, Clock]:
    store = store or FakeACLStore()
    store.put(WEB_READ)  # policies are always replicated: they resolve locally
    clock = clock or Clock(JAN_1_2030)
    config = ACLConfig(enabled=True, default_policy="deny", down_policy=down_policy, token_ttl=30.0,
                       enable_token_replication=token_replication)
    resolver = ACLResolver(store, config, "dc2", clock=clock)
    resolver.use_primary(primary)
    return resolver, store, clock


def resolve(resolver: ACLResolver, secret: str):
    return asyncio.run(resolver.resolve_async(secret))


def test_the_decision_table() -> None:
    table = {(policy, cached): when_down(policy, cached) for policy in DOWN_POLICIES for cached in (True, False)}
    assert table == {
        ("extend-cache", True): WhenDown.CACHED, ("extend-cache", False): WhenDown.DENY_ALL,
        ("async-cache", True): WhenDown.CACHED, ("async-cache", False): WhenDown.DENY_ALL,
        ("deny", True): WhenDown.DENY_ALL, ("deny", False): WhenDown.DENY_ALL,
        ("allow", True): WhenDown.ALLOW_ALL, ("allow", False): WhenDown.ALLOW_ALL,
    }


def test_a_token_only_the_primary_holds_resolves_with_local_policies_and_is_cached_for_token_ttl() -> None:
    primary = Primary(WEB)
    resolver, _, clock = secondary("extend-cache", primary)
    identity = resolve(resolver, "s-web")
    assert identity.accessor_id == "a-web" and identity.authorizer.service_read("web")
    assert not identity.authorizer.service_write("web")
    resolve(resolver, "s-web")
    assert primary.calls == 1
    clock.now += 31
    resolve(resolver, "s-web")
    assert primary.calls == 2


def test_the_primary_saying_acl_not_found_is_acl_not_found_and_drops_the_cache() -> None:
    primary = Primary(WEB)
    resolver, _, clock = secondary("extend-cache", primary)
    resolve(resolver, "s-web")
    del primary.tokens["s-web"]
    clock.now += 31
    with pytest.raises(RPCError) as caught:
        resolve(resolver, "s-web")
    assert (caught.value.code, caught.value.message) == (grpc.StatusCode.PERMISSION_DENIED, ACL_NOT_FOUND)
    primary.down = True
    assert not resolve(resolver, "s-web").authorizer.service_read("web")  # nothing left to extend


@pytest.mark.parametrize("down_policy, known_reads, unknown_reads", [
    ("extend-cache", True, False),
    ("async-cache", True, False),
    ("deny", False, False),
    ("allow", True, True),
])
def test_down_policy_once_the_cache_entry_is_past_its_ttl(down_policy: str, known_reads: bool,
                                                          unknown_reads: bool) -> None:
    primary = Primary(WEB)
    resolver, _, clock = secondary(down_policy, primary)
    resolve(resolver, "s-web")
    primary.down = True
    clock.now += 3600  # far past token_ttl
    assert resolve(resolver, "s-web").authorizer.service_read("web") is known_reads
    assert resolve(resolver, "s-never-seen").authorizer.service_read("web") is unknown_reads


def test_deny_still_uses_an_entry_within_its_ttl() -> None:
    primary = Primary(WEB)
    resolver, _, clock = secondary("deny", primary)
    resolve(resolver, "s-web")
    primary.down = True
    clock.now += 10
    assert resolve(resolver, "s-web").authorizer.service_read("web")


def test_async_cache_serves_the_old_entry_at_once_and_refreshes_behind() -> None:
    primary = Primary(WEB)
    resolver, store, clock = secondary("async-cache", primary)

    async def scenario() -> None:
        await resolver.resolve_async("s-web")
        primary.tokens["s-web"] = replace(WEB, policies=())  # the primary took the policy away
        clock.now += 31
        stale = await resolver.resolve_async("s-web")
        assert stale.authorizer.service_read("web"), "async-cache answers with what it had"
        for _ in range(5):
            await asyncio.sleep(0)
        assert primary.calls == 2
        assert not (await resolver.resolve_async("s-web")).authorizer.service_read("web")

    asyncio.run(scenario())


def test_with_token_replication_held_tokens_never_ask_the_primary() -> None:
    primary = Primary()
    store = FakeACLStore()
    store.put(WEB)
    resolver, _, _ = secondary("deny", primary, store=store, token_replication=True)
    primary.down = True
    assert resolve(resolver, "s-web").authorizer.service_read("web")
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):  # replicated tables say it does not exist
        resolve(resolver, "s-other")
    assert primary.calls == 0


def test_without_token_replication_a_stored_global_token_is_a_leftover_the_primary_decides() -> None:
    primary = Primary()  # the primary no longer has it
    store = FakeACLStore()
    store.put(WEB)
    resolver, _, _ = secondary("extend-cache", primary, store=store)
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):
        resolve(resolver, "s-web")
    local = Token("a-local", "s-local", policies=(Link("p-web"),), local=True)
    store.put(local)
    assert resolve(resolver, "s-local").authorizer.service_read("web")
    assert primary.calls == 1


def test_the_primary_resolves_as_before() -> None:
    """No `use_primary`: resolve_async is resolve."""
    store = FakeACLStore()
    store.put(WEB_READ)
    resolver = ACLResolver(store, ACLConfig(enabled=True, default_policy="deny"), "dc1", clock=Clock(JAN_1_2030))
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):
        resolve(resolver, "s-web")

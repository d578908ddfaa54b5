"""Token resolution (reference/acl.md §6.1, §2.4, §2.5), against a small in-memory store that
implements the resolver's read protocol (the contract's reads), and an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import grpc
import pytest

from meshfed.fsm.acl import ANONYMOUS_ACCESSOR_ID, GLOBAL_MANAGEMENT_POLICY_ID
from meshfed.fsm.acl.records import ACLLink as Link
from meshfed.fsm.acl.records import ACLPolicy as Policy
from meshfed.fsm.acl.records import ACLRole as Role
from meshfed.fsm.acl.records import ACLToken as Token
from meshfed.fsm.acl.records import NodeIdentity, ServiceIdentity
from meshfed.rpc.errors import RPCError
from meshfed.server.acl.resolver import ACL_NOT_FOUND, ACLResolver
from meshfed.server.config.settings import ACLConfig, ACLTokens


@dataclass
class FakeACLStore:
    """The contract's reads over dicts of the real ACL records; every write bumps the ACL tables' index."""

    tokens: dict[str, Token] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    last_index: int = 1
    reads: int = 0

    def put(self, record: Token | Policy | Role) -> None:
        self.last_index += 1
        if isinstance(record, Token):
            self.tokens[record.secret_id] = record
        elif isinstance(record, Policy):
            self.policies[record.id] = record
        else:
            self.roles[record.id] = record

    def index(self, *tables: str) -> int:
        return self.last_index

    def acl_token_by_secret(self, secret: str) -> tuple[int, Token | None]:
        self.reads += 1
        return self.last_index, self.tokens.get(secret)

    def acl_policies(self, ids: Iterable[str] | None = None) -> tuple[int, list[Policy]]:
        wanted = list(self.policies) if ids is None else list(ids)
        return self.last_index, [self.policies[i] for i in wanted if i in self.policies]

    def acl_roles(self, ids: Iterable[str] | None = None) -> tuple[int, list[Role]]:
        wanted = list(self.roles) if ids is None else list(ids)
        return self.last_index, [self.roles[i] for i in wanted if i in self.roles]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


JAN_1_2030 = 1893456000.0  # 2030-01-01T00:00:00Z
WEB_READ = Policy("p-web", "web-read", rules='service "web" { policy = "read" }')


def resolver(store: FakeACLStore | None, default_policy: str = "deny", clock: Clock | None = None,
             initial_management: str = "") -> ACLResolver:
    config = ACLConfig(enabled=True, default_policy=default_policy,
                       tokens=ACLTokens(initial_management=initial_management))
    return ACLResolver(store, config, "dc1", clock=clock or Clock(JAN_1_2030))


def test_unknown_secret_is_acl_not_found() -> None:
    with pytest.raises(RPCError) as caught:
        resolver(FakeACLStore()).resolve("no-such-secret")
    assert (caught.value.code, caught.value.message) == (grpc.StatusCode.PERMISSION_DENIED, ACL_NOT_FOUND)


def test_a_token_gets_its_policies_and_nothing_more() -> None:
    store = FakeACLStore()
    store.put(WEB_READ)
    store.put(Token("a-1", "s-1", policies=(Link("p-web"),)))
    identity = resolver(store).resolve("s-1")
    assert identity.accessor_id == "a-1"
    assert identity.authorizer.service_read("web")
    assert not identity.authorizer.service_write("web")  # the rule's level is final (§4.2)
    assert not identity.authorizer.service_read("db")  # no rule: deny default


def test_global_management_policy_allows_everything() -> None:
    store = FakeACLStore()
    store.put(Token("a-m", "s-m", policies=(Link(GLOBAL_MANAGEMENT_POLICY_ID),)))
    authorizer = resolver(store).resolve("s-m").authorizer
    assert authorizer.management and authorizer.acl_write() and authorizer.operator_write()


def test_configured_initial_management_secret_is_management_without_a_stored_token() -> None:
    for store in (None, FakeACLStore()):
        identity = resolver(store, initial_management="boot-secret").resolve("boot-secret")
        assert identity.authorizer.management
        assert "boot-secret" not in identity.accessor_id


@pytest.mark.parametrize(("default_policy", "allowed"), [("allow", True), ("deny", False)])
def test_anonymous_without_policies_gets_the_default_policy(default_policy: str, allowed: bool) -> None:
    for secret in ("", "anonymous"):
        identity = resolver(FakeACLStore(), default_policy).resolve(secret)
        assert identity.accessor_id == ANONYMOUS_ACCESSOR_ID
        assert identity.authorizer.service_write("web") is allowed
        assert not identity.authorizer.acl_read()  # allow-all never includes acl (§9 case 29)


def test_stored_anonymous_token_uses_its_policies() -> None:
    store = FakeACLStore()
    store.put(WEB_READ)
    store.put(Token(ANONYMOUS_ACCESSOR_ID, "anonymous", policies=(Link("p-web"),)))
    authorizer = resolver(store).resolve("").authorizer
    assert authorizer.service_read("web") and not authorizer.service_read("db")


def test_expired_token_is_acl_not_found_even_from_the_cache() -> None:
    clock = Clock(JAN_1_2030 - 10)
    store = FakeACLStore()
    store.put(Token("a-e", "s-e", expiration_time="2030-01-01T00:00:00Z"))
    tokens = resolver(store, clock=clock)
    assert tokens.resolve("s-e").accessor_id == "a-e"
    clock.now = JAN_1_2030  # ExpirationTime <= now: gone, although no table changed
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):
        tokens.resolve("s-e")
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):
        resolver(store, clock=clock).resolve("s-e")  # and on a cold cache


def test_a_policy_edit_takes_effect_on_the_next_request() -> None:
    store = FakeACLStore()
    store.put(WEB_READ)
    store.put(Token("a-1", "s-1", policies=(Link("p-web"),)))
    tokens = resolver(store)
    assert not tokens.resolve("s-1").authorizer.service_write("web")
    store.put(replace(WEB_READ, rules='service "web" { policy = "write" }'))
    assert tokens.resolve("s-1").authorizer.service_write("web")


def test_a_deleted_token_stops_resolving_at_once() -> None:
    store = FakeACLStore()
    store.put(Token("a-1", "s-1"))
    tokens = resolver(store)
    tokens.resolve("s-1")
    del store.tokens["s-1"]
    store.last_index += 1
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):
        tokens.resolve("s-1")


def test_unchanged_tables_are_served_from_the_cache() -> None:
    store = FakeACLStore()
    store.put(Token("a-1", "s-1"))
    tokens = resolver(store)
    tokens.resolve("s-1")
    reads = store.reads
    tokens.resolve("s-1")
    assert store.reads == reads


def test_roles_and_identities_expand_and_respect_datacenters() -> None:
    store = FakeACLStore()
    store.put(Policy("p-db", "db-write", rules='service "db" { policy = "write" }'))
    store.put(Policy("p-elsewhere", "dc2-only", rules='service "cache" { policy = "write" }', datacenters=("dc2",)))
    store.put(Role("r-1", "ops", policies=(Link("p-db"),), node_identities=(NodeIdentity("n1", "dc1"),)))
    store.put(Token("a-1", "s-1", roles=(Link("r-1"),), policies=(Link("p-elsewhere"),),
                    service_identities=(ServiceIdentity("web"), ServiceIdentity("api", ("dc2",))),
                    node_identities=(NodeIdentity("n2", "dc2"),)))
    authorizer = resolver(store).resolve("s-1").authorizer
    assert authorizer.service_write("db")  # from the role's policy
    assert authorizer.node_write("n1")  # the role's node identity in dc1
    assert authorizer.service_write("web") and authorizer.service_write("web-sidecar-proxy")
    assert not authorizer.service_write("api")  # that service identity is for dc2 only
    assert not authorizer.service_write("cache")  # policy limited to dc2
    assert not authorizer.node_write("n2")  # node identity of dc2


class CatchUpThatApplies:
    """A follower's catch-up: when waited on, the writes the leader had committed land here."""

    def __init__(self, store: FakeACLStore, arriving: list[Token | Policy | Role]) -> None:
        self.store = store
        self.arriving = arriving
        self.calls = 0

    async def wait(self) -> bool:
        self.calls += 1
        for record in self.arriving:
            self.store.put(record)
        self.arriving = []
        return True


def test_a_token_the_leader_committed_but_this_server_has_not_applied_resolves_after_catching_up() -> None:
    store = FakeACLStore()
    store.put(WEB_READ)
    catch_up = CatchUpThatApplies(store, [Token("a-new", "s-new", policies=(Link("p-web"),))])
    tokens = resolver(store)
    tokens.use_catch_up(catch_up.wait)
    identity = asyncio.run(tokens.resolve_async("s-new"))
    assert identity.accessor_id == "a-new" and identity.authorizer.service_read("web")
    assert catch_up.calls == 1
    assert asyncio.run(tokens.resolve_async("s-new")).accessor_id == "a-new"
    assert catch_up.calls == 1  # held here now: no second catch-up


def test_catching_up_does_not_revive_unknown_or_expired_secrets_nor_run_for_them_needlessly() -> None:
    clock = Clock(JAN_1_2030)
    store = FakeACLStore()
    store.put(Token("a-old", "s-old", expiration_time="2029-12-31T23:59:59Z"))
    catch_up = CatchUpThatApplies(store, [])
    tokens = resolver(store, clock=clock)
    tokens.use_catch_up(catch_up.wait)
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):
        asyncio.run(tokens.resolve_async("no-such-secret"))
    assert catch_up.calls == 1
    with pytest.raises(RPCError, match=ACL_NOT_FOUND):
        asyncio.run(tokens.resolve_async("s-old"))  # held and expired: catching up cannot help
    assert asyncio.run(tokens.resolve_async("")).accessor_id == ANONYMOUS_ACCESSOR_ID
    assert catch_up.calls == 1

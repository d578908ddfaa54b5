"""Token expiry: the pure reaping decision, the store's cheap scan, the leader's reaper against a
real state machine (Raft twin) with an injected clock, and the lifetime bounds of token create.

What is pinned: a token stops at exactly its ExpirationTime; the primary's leader deletes expired
global and local tokens, a secondary's leader only local ones (globals go by replication); a
token that has not expired, or never expires, is never deleted; create refuses lifetimes outside
acl.token_min/max_expiration_ttl with Consul's texts, and accepts a short one when configured.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import grpc
import pytest

from meshfed.fsm import ACLTokenDelete, ACLTokenSet
from meshfed.fsm.acl.expiry import Expiring, expires_at, is_expired, reapable
from meshfed.fsm.acl.records import ACLToken
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.acl.resolver import ACLResolver, state_reader
from meshfed.server.config.settings import ACLConfig
from meshfed.server.endpoints.acl import ACLEndpoint
from meshfed.server.leader import acl_expiry
from meshfed.server.leader.acl_expiry import reap_expired_tokens, reap_once
from tests.twins.raft import RaftTwin
from tests.twins.server import server_twin

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NOW = T0.timestamp()


def at(seconds: float) -> str:
    return (T0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# (what, expiration, local, primary, reaped?)
CASES = [
    ("global expired, primary", at(-1), False, True, True),
    ("global expired, secondary leaves it to replication", at(-1), False, False, False),
    ("local expired, primary", at(-1), True, True, True),
    ("local expired, secondary", at(-1), True, False, True),
    ("expires exactly now", at(0), False, True, True),
    ("a microsecond left", at(0.000001), False, True, False),
    ("an hour left", at(3600), True, False, False),
    ("numeric offset", "2025-12-31T23:00:00-02:00", False, True, False),  # = 01:00Z, after T0
    ("unparsable is never reaped", "yesterday", False, True, False),
]


@pytest.mark.parametrize("what, expiration, local, primary, reaped", CASES, ids=[c[0] for c in CASES])
def test_reapable(what: str, expiration: str, local: bool, primary: bool, reaped: bool) -> None:
    token = Expiring("a1", expiration, local)
    assert reapable([token], NOW, primary=primary) == (["a1"] if reaped else [])


def test_expiry_helpers() -> None:
    assert expires_at(None) is None and expires_at("") is None and expires_at("junk") is None
    assert expires_at(at(10)) == NOW + 10
    assert is_expired(at(10), NOW + 10) and not is_expired(at(10), NOW + 9.999)
    assert not is_expired(None, 1e12)
    mixed = [Expiring("c", at(-5), False), Expiring("a", at(-5), True), Expiring("b", at(5), False)]
    assert reapable(mixed, NOW, primary=True) == ["a", "c"]  # sorted, live one kept


def token(accessor: str, secret: str, expiration: str | None = None, local: bool = False) -> ACLToken:
    return ACLToken(accessor_id=accessor, secret_id=secret, description=accessor, expiration_time=expiration,
                    local=local, create_time=at(-100))


def seeded_twin() -> RaftTwin:
    raft = RaftTwin()
    for record in (
        token("11111111-0000-4000-8000-000000000001", "s-old-global", at(-1)),
        token("11111111-0000-4000-8000-000000000002", "s-old-local", at(-1), local=True),
        token("11111111-0000-4000-8000-000000000003", "s-later", at(60)),
        token("11111111-0000-4000-8000-000000000004", "s-forever"),
    ):
        assert raft.apply_now(ACLTokenSet(record)).ok
    return raft


def accessors(raft: RaftTwin) -> set[str]:
    return {t.accessor_id[-1] for t in raft.state.acl_tokens()[1] if t.accessor_id.startswith("1111")}


def test_store_lists_only_tokens_that_expire() -> None:
    raft = seeded_twin()
    expiring = raft.state.acl_expiring_tokens()[1]
    assert sorted((e.accessor_id[-1], e.local) for e in expiring) == [("1", False), ("2", True), ("3", False)]


def test_primary_reaper_deletes_expired_global_and_local_tokens_through_raft() -> None:
    raft = seeded_twin()
    deleted = asyncio.run(reap_once(raft.state, raft, primary=True, now=NOW))
    assert deleted == 2 and accessors(raft) == {"3", "4"}
    assert sorted(c.accessor_id[-1] for c in raft.commands if isinstance(c, ACLTokenDelete)) == ["1", "2"]
    assert asyncio.run(reap_once(raft.state, raft, primary=True, now=NOW)) == 0  # nothing left to do


def test_secondary_reaper_deletes_only_local_tokens() -> None:
    raft = seeded_twin()
    assert asyncio.run(reap_once(raft.state, raft, primary=False, now=NOW)) == 1
    assert accessors(raft) == {"1", "3", "4"}


def test_reaper_batches_large_backlogs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acl_expiry, "BATCH_SIZE", 3)
    raft = RaftTwin()
    for i in range(7):
        raft.apply_now(ACLTokenSet(token(f"22222222-0000-4000-8000-00000000000{i}", f"s{i}", at(-1))))
    proposals_before = raft.index
    assert asyncio.run(reap_once(raft.state, raft, primary=True, now=NOW)) == 7
    assert raft.index - proposals_before == 3  # 3 + 3 + 1 deletes


def test_reaper_loop_follows_the_injected_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acl_expiry, "SCAN_INTERVAL", 0.005)
    raft = seeded_twin()
    clock = [NOW - 10]  # before anything expired
    reaped: list[int] = []

    async def scenario() -> None:
        task = asyncio.create_task(reap_expired_tokens(raft.state, raft, primary=True, clock=lambda: clock[0],
                                                       on_reaped=reaped.append))
        await asyncio.sleep(0.05)
        assert accessors(raft) == {"1", "2", "3", "4"}
        clock[0] = NOW + 60  # the third token expires exactly now
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert accessors(raft) == {"4"} and sum(reaped) == 3


def test_resolver_refuses_an_expired_token_before_the_reaper_runs() -> None:
    raft = seeded_twin()
    clock = [NOW + 59.5]
    resolver = ACLResolver(state_reader(raft.state), ACLConfig(enabled=True, default_policy="deny"), "dc1",
                           clock=lambda: clock[0])
    assert resolver.resolve("s-later").accessor_id.endswith("3")
    clock[0] = NOW + 60
    with pytest.raises(RPCError) as caught:
        resolver.resolve("s-later")
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED and caught.value.message == "ACL not found"


# ---- lifetime bounds on create ----------------------------------------------------------------


def endpoint(**bounds: float) -> ACLEndpoint:
    twin = server_twin("dc1")
    return ACLEndpoint(datacenter="dc1", primary_datacenter="dc1", state=twin.state, raft=twin.raft,
                       router=twin.router, queries=twin.queries, now=lambda: T0, **bounds)


async def create(acl: ACLEndpoint, **fields: Any) -> Any:
    _, reply = await acl.handlers()["ACL/TokenSet"](RequestHeader(), {"token": fields})
    return reply


@pytest.mark.parametrize("fields, message", [
    ({"ExpirationTTL": "30s"}, "ExpirationTime cannot be less than 1m0s in the future (was 30s)"),
    ({"ExpirationTTL": "24h1m"}, "ExpirationTime cannot be more than 24h0m0s in the future (was 24h1m0s)"),
    ({"ExpirationTime": at(30)}, "ExpirationTime cannot be less than 1m0s in the future (was 30s)"),
    ({"ExpirationTime": at(-30)}, "ExpirationTime cannot be before CreateTime"),
    ({"ExpirationTTL": "1h", "ExpirationTime": at(3600)}, "Token Expiration TTL and Expiration Time cannot both be set"),
])
def test_create_refuses_lifetimes_outside_the_bounds(fields: dict[str, str], message: str) -> None:
    with pytest.raises(RPCError) as caught:
        asyncio.run(create(endpoint(), **fields))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and caught.value.message == message


def test_create_accepts_the_bounds_and_configured_short_lifetimes() -> None:
    assert asyncio.run(create(endpoint(), ExpirationTTL="1m"))["ExpirationTime"] == at(60)
    assert asyncio.run(create(endpoint(), ExpirationTTL="24h"))["ExpirationTime"] == at(86400)
    short = endpoint(min_expiration_ttl=1.0, max_expiration_ttl=10.0)
    assert asyncio.run(create(short, ExpirationTTL="2s"))["ExpirationTime"] == at(2)
    with pytest.raises(RPCError):
        asyncio.run(create(short, ExpirationTTL="11s"))

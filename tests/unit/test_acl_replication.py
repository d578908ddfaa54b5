"""ACL replication (reference/acl.md §6.3): the diff, the primary's replication reads with the
secondary's delegates on the shared replicator (twins of two datacenters), the status JSON, and
who may call the reads (server certificates of known datacenters)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc
import pytest

from meshfed.fsm import (
    ACLPolicyBatchSet,
    ACLPolicyDelete,
    ACLRoleBatchSet,
    ACLRoleDelete,
    ACLTokenBatchSet,
    ACLTokenDelete,
)
from meshfed.fsm.acl.records import ACLPolicy, ACLToken
from meshfed.replication.acl_delegates import (
    ERR_REDACTED_TOKENS,
    diff_acl,
    policy_delegate,
    role_delegate,
    token_delegate,
)
from meshfed.replication.loop import ReplicationStatus
from meshfed.replication.replicator import Replicator
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.acl.peers import ERR_NOT_A_SERVER, ServerPeerCheck, server_datacenters
from meshfed.server.config.settings import ACLConfig, ACLTokens, Config
from meshfed.server.endpoints import acl_shapes
from meshfed.server.endpoints.writes import propose
from meshfed.server.wan.replication import acl_replication_json
from tests.unit.test_endpoint_acl import DC


def test_diff_keeps_local_tokens_and_updates_by_hash_only() -> None:
    same = ACLToken("a1", "s1", hash="h1", modify_index=5)
    changed_here = ACLToken("a2", "s2", hash="old")
    gone = ACLToken("a3", "s3", hash="h3")
    mine = ACLToken("a4", "s4", local=True, hash="h4")
    remote = [dataclasses.replace(same, modify_index=99), ACLToken("a2", "s2", hash="new"), ACLToken("a5", "s5", hash="h5")]
    diff = diff_acl([same, changed_here, gone, mine], remote, lambda token: not token.local)
    assert [t.accessor_id for t in diff.deletions] == ["a3"]
    assert [t.accessor_id for t in diff.updates] == ["a2", "a5"]  # indexes alone never rewrite
    policies = diff_acl([ACLPolicy("p1", "x", hash="a")], [ACLPolicy("p1", "y", hash="a")])
    assert policies.updates == [] and policies.deletions == []


class Pair:
    """dc1 (primary) and dc2 twins, dc2's delegates fetching from dc1 through the router twin."""

    def __init__(self, reveal: bool) -> None:
        self.dc1, self.dc2 = DC("dc1"), DC("dc2")
        self.dc2.twin.router.peers["dc1"] = self.dc1.endpoint.handlers()
        self.dc1.endpoint.reveal_secrets_to = lambda token: reveal and token == "repl"  # type: ignore[method-assign]

    def replicator(self, method: str, make: Any, local: Any, upsert: Any, delete: Any) -> Replicator[Any]:
        endpoint, raft = self.dc2.endpoint, self.dc2.twin.raft

        async def fetch(min_index: int) -> tuple[int, list[Any]]:
            header = RequestHeader(datacenter="dc1", allow_stale=True, min_query_index=min_index, token="repl")
            return await endpoint.fetch_replicated(method, header)

        async def run(command: Any) -> None:
            await propose(raft, "", command)

        return Replicator(make(fetch, local, lambda r: run(upsert(r)), lambda k: run(delete(k))), apply_limit=0)

    def tokens(self) -> Replicator[Any]:
        state = self.dc2.twin.state
        return self.replicator("ACL/TokenReplicate", token_delegate, lambda: state.acl_tokens()[1],
                               lambda t: ACLTokenBatchSet((t,)), ACLTokenDelete)

    def policies(self) -> Replicator[Any]:
        state = self.dc2.twin.state
        return self.replicator("ACL/PolicyReplicate", policy_delegate, lambda: state.acl_policies()[1],
                               lambda p: ACLPolicyBatchSet((p,)), ACLPolicyDelete)

    def roles(self) -> Replicator[Any]:
        state = self.dc2.twin.state
        return self.replicator("ACL/RoleReplicate", role_delegate, lambda: state.acl_roles()[1],
                               lambda r: ACLRoleBatchSet((r,)), ACLRoleDelete)


async def seed(pair: Pair) -> dict[str, Any]:
    dc1 = pair.dc1
    policy = await dc1.call("ACL/PolicySet", {"policy": {"Name": "web", "Rules": 'service "web" { policy = "write" }'}})
    role = await dc1.call("ACL/RoleSet", {"role": {"Name": "ops", "Policies": [{"Name": "web"}]}})
    token = await dc1.call("ACL/TokenSet", {"token": {"Policies": [{"Name": "web"}], "Roles": [{"Name": "ops"}]}})
    local = await dc1.call("ACL/TokenSet", {"token": {"Policies": [{"Name": "web"}], "Local": True}})
    return {"policy": policy, "role": role, "token": token, "local": local}


def test_policies_roles_and_global_tokens_replicate_and_deletes_follow() -> None:
    pair = Pair(reveal=True)

    async def scenario() -> None:
        made = await seed(pair)
        here = await pair.dc2.call("ACL/TokenSet", {"token": {"Local": True, "Description": "dc2's own"}})
        for replicator in (pair.policies(), pair.roles(), pair.tokens()):
            await replicator.round()
        state = pair.dc2.twin.state
        assert state.acl_policy(made["policy"]["ID"])[1].rules == 'service "web" { policy = "write" }'
        assert state.acl_role(made["role"]["ID"])[1].policies[0].name == "web"
        copied = state.acl_token_by_secret(made["token"]["SecretID"])[1]
        assert copied is not None and copied.hash == made["token"]["Hash"]
        assert state.acl_token_by_accessor(made["local"]["AccessorID"])[1] is None, "a Local token crossed"

        await pair.dc1.call("ACL/TokenDelete", {"accessor": made["token"]["AccessorID"]})
        tokens = pair.tokens()
        await tokens.round()
        assert state.acl_token_by_accessor(made["token"]["AccessorID"])[1] is None
        assert state.acl_token_by_accessor(here["AccessorID"])[1] is not None, "dc2's local token was deleted"
        again = pair.tokens()  # a new leader: starts at remote index 0, so compares everything
        await again.round()
        assert again.status.applies == 0, "an unchanged primary rewrote something"

    asyncio.run(scenario())


def test_a_replication_token_without_acl_write_gets_consuls_error_and_stores_nothing() -> None:
    pair = Pair(reveal=False)

    async def scenario() -> None:
        made = await seed(pair)
        tokens = pair.tokens()
        with pytest.raises(RuntimeError):
            await tokens.round()
        assert ERR_REDACTED_TOKENS in tokens.status.last_error_message
        assert tokens.status.last_error_message.startswith("failed to retrieve acl_tokens: ")
        assert pair.dc2.twin.state.acl_token_by_accessor(made["token"]["AccessorID"])[1] is None
        await pair.policies().round()  # acl:read is enough for policies
        assert pair.dc2.twin.state.acl_policy(made["policy"]["ID"])[1] is not None

    asyncio.run(scenario())


def test_remote_resolve_answers_global_tokens_only() -> None:
    pair = Pair(reveal=True)

    async def scenario() -> None:
        made = await seed(pair)
        found = await pair.dc2.endpoint.resolve_remote(made["token"]["SecretID"])
        assert found is not None and found.accessor_id == made["token"]["AccessorID"]
        assert [link.id for link in found.policies] == [made["policy"]["ID"]]
        assert await pair.dc2.endpoint.resolve_remote(made["local"]["SecretID"]) is None
        assert await pair.dc2.endpoint.resolve_remote("no-such-secret") is None
        pair.dc2.twin.router.wan_up = False
        with pytest.raises(RPCError) as caught:
            await pair.dc2.endpoint.resolve_remote(made["token"]["SecretID"])
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE

    asyncio.run(scenario())


def test_token_json_round_trip() -> None:
    token = ACLToken("a", "s", description="d", local=False, expiration_time="2030-01-01T00:00:00Z",
                     create_time="2026-01-01T00:00:00Z", hash="h")
    assert acl_shapes.token_from_json(acl_shapes.token_json(token)) == token
    with pytest.raises(ValueError):
        acl_shapes.token_from_json(["not", "a", "token"])


# ---- status ----------------------------------------------------------------------------------


def config(primary: bool, tokens: bool = True) -> Config:
    acl = ACLConfig(enabled=True, enable_token_replication=tokens, tokens=ACLTokens(replication="r"))
    return Config(node_name="s1", datacenter="dc1" if primary else "dc2", primary_datacenter="dc1", acl=acl)


def test_status_json_follows_consul() -> None:
    assert acl_replication_json(config(primary=True), {})["Enabled"] is False
    statuses = {name: ReplicationStatus(name, running=True, last_remote_index=i, last_success=1_700_000_000.0 + i)
                for i, name in enumerate(("acl_policies", "acl_roles", "acl_tokens"), start=1)}
    statuses["acl_roles"].last_error, statuses["acl_roles"].last_error_message = 1_700_000_100.0, "boom"
    body = acl_replication_json(config(primary=False), statuses)
    assert body == {
        "Enabled": True, "Running": True, "SourceDatacenter": "dc1", "ReplicationType": "tokens",
        "ReplicatedIndex": 1, "ReplicatedRoleIndex": 2, "ReplicatedTokenIndex": 3,
        "LastSuccess": "2023-11-14T22:13:23Z", "LastError": "2023-11-14T22:15:00Z", "LastErrorMessage": "boom",
    }
    statuses["acl_tokens"].running = False  # tokens off: its loop does not count
    policies_only = acl_replication_json(config(primary=False, tokens=False), statuses)
    assert policies_only["ReplicationType"] == "policies" and policies_only["Running"] is True


# ---- who may call -----------------------------------------------------------------------------


def test_server_datacenters_reads_only_the_any_server_name() -> None:
    names = ["server.dc2.consul", "s1.server.dc2.consul", "localhost", "server.dc3.other", "client.dc1.consul"]
    assert server_datacenters(names, "consul.") == {"dc2"}
    assert server_datacenters(["SERVER.DC2.CONSUL."], "consul") == {"dc2"}


@pytest.mark.parametrize("names, allowed", [
    (["server.dc2.consul", "localhost"], True),
    (["server.dc1.consul"], True),  # our own DC's servers (a follower forwarding to the leader)
    (["server.dc9.consul"], False),  # a DC that does not exist
    (["client.dc2.consul"], False),
    ([], False),  # no client certificate
])
def test_peer_check_wants_a_server_certificate_of_a_known_datacenter(names: list[str], allowed: bool) -> None:
    check = ServerPeerCheck("consul", lambda: ["dc1", "DC2"])
    if allowed:
        check("ACL/TokenReplicate", names)
        return
    with pytest.raises(RPCError) as caught:
        check("ACL/TokenReplicate", names)
    assert (caught.value.code, caught.value.message) == (grpc.StatusCode.PERMISSION_DENIED, ERR_NOT_A_SERVER)
    assert "ConnectCA/SignIntermediate" in check.methods

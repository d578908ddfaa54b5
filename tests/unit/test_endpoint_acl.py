"""ACL.* endpoint (reference/acl.md §3, §9) on the shared twins: a real state machine and
blocking-query engine, a router twin per datacenter."""

from __future__ import annotations

import asyncio
import datetime
import os
from typing import Any

import grpc
import pytest

from meshfed.fsm.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshfed.fsm.acl.records import ANONYMOUS_TOKEN_ACCESSOR_ID
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.endpoints.acl import BOOTSTRAP_RESET_FILE, ACLEndpoint
from tests.twins.server import ServerTwin, server_twin

NODE_READ = 'node_prefix "" { policy = "read" }'
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class DC:
    def __init__(self, name: str, data_dir: str | None = None) -> None:
        self.twin: ServerTwin = server_twin(name)
        self.clock = START
        self.endpoint = ACLEndpoint(
            datacenter=name, primary_datacenter="dc1", state=self.twin.state, raft=self.twin.raft,
            router=self.twin.router, queries=self.twin.queries, data_dir=data_dir, now=lambda: self.clock,
        )

    async def call(self, method: str, body: Any = None, token: str = "") -> Any:
        _, reply = await self.endpoint.handlers()[method](RequestHeader(token=token), body or {})
        return reply


def run(scenario) -> None:
    asyncio.run(scenario())


async def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(RPCError) as caught:
        await call
    assert caught.value.code == code, caught.value.message
    return caught.value.message


def test_bootstrap_once_then_403_then_reset_file_allows_one_more(tmp_path) -> None:
    """§9 cases 2-4."""
    dc1 = DC("dc1", data_dir=str(tmp_path))

    async def scenario() -> None:
        first = await dc1.call("ACL/Bootstrap")
        assert first["ID"] == first["SecretID"] and first["Description"] == "Bootstrap Token (Global Management)"
        assert first["Policies"] == [{"ID": GLOBAL_MANAGEMENT_POLICY_ID, "Name": "global-management"}]
        message = await refused(dc1.call("ACL/Bootstrap"), grpc.StatusCode.PERMISSION_DENIED)
        reset_index = first["CreateIndex"]
        assert message == f"Permission denied: ACL bootstrap no longer allowed (reset index: {reset_index})"
        (tmp_path / BOOTSTRAP_RESET_FILE).write_text(f"{reset_index}\n")
        again = await dc1.call("ACL/Bootstrap")
        assert again["AccessorID"] != first["AccessorID"]
        assert not os.path.exists(tmp_path / BOOTSTRAP_RESET_FILE)

    run(scenario)


def test_policy_create_read_update_delete() -> None:
    """§9 cases 8, 10, 11, 12; py-consul sends lower-case keys."""
    dc1 = DC("dc1")

    async def scenario() -> None:
        created = await dc1.call("ACL/PolicySet", {"policy": {"name": "node-read", "rules": NODE_READ}})
        assert created["CreateIndex"] == created["ModifyIndex"] and created["Hash"] and created["ID"]
        by_name = await dc1.call("ACL/PolicyRead", {"name": "global-management"})
        assert by_name["policy"]["ID"] == GLOBAL_MANAGEMENT_POLICY_ID
        bad_name = dc1.call("ACL/PolicySet", {"policy": {"Name": "bad name!"}})
        assert "invalid Name" in await refused(bad_name, grpc.StatusCode.INVALID_ARGUMENT)
        bad_rules = dc1.call("ACL/PolicySet", {"policy": {"Name": "x", "Rules": 'service "x" { policy = "sudo" }'}})
        assert "Failed to parse policy: line 1: Invalid service policy" in await refused(
            bad_rules, grpc.StatusCode.INVALID_ARGUMENT)
        updated = await dc1.call("ACL/PolicySet", {"policy": {"Name": "node-read2"}, "id": created["ID"]})
        assert updated["Name"] == "node-read2" and updated["CreateIndex"] == created["CreateIndex"]
        stubs = await dc1.call("ACL/PolicyList")
        assert {p["Name"] for p in stubs} == {"global-management", "node-read2"} and "Rules" not in stubs[0]
        assert await dc1.call("ACL/PolicyDelete", {"id": created["ID"]}) is True
        message = await refused(dc1.call("ACL/PolicyDelete", {"id": created["ID"]}), grpc.StatusCode.NOT_FOUND)
        assert message == "Cannot find policy to delete"

    run(scenario)


def test_token_create_resolves_names_and_read_self_clone_delete() -> None:
    """§9 cases 5, 6, 13, 14, 18, 19, 20, 21, 22."""
    dc1 = DC("dc1")

    async def scenario() -> None:
        policy = await dc1.call("ACL/PolicySet", {"policy": {"Name": "node-read", "Rules": NODE_READ}})
        token = await dc1.call("ACL/TokenSet", {"token": {"Description": "t", "Policies": [{"Name": "node-read"}]}})
        assert token["Policies"] == [{"ID": policy["ID"], "Name": "node-read"}] and token["Local"] is False
        missing = dc1.call("ACL/TokenSet", {"token": {"Policies": [{"Name": "nope"}]}})
        assert await refused(missing, grpc.StatusCode.INVALID_ARGUMENT) == 'No such ACL policy with name "nope"'
        read = await dc1.call("ACL/TokenRead", {"accessor": token["AccessorID"]})
        assert read["token"] == token
        assert (await dc1.call("ACL/TokenRead", {"accessor": "6a1253d2-1785-24fd-91c2-f8e78c745511"}))["token"] is None
        me = await dc1.call("ACL/TokenSelf", token=token["SecretID"])
        assert me["AccessorID"] == token["AccessorID"]
        unknown = dc1.call("ACL/TokenSelf", token="45a3bd52-07c7-47a4-52fd-0745e0cfe967")
        assert await refused(unknown, grpc.StatusCode.PERMISSION_DENIED) == "ACL not found"
        clone = await dc1.call("ACL/TokenClone", {"accessor": token["AccessorID"], "description": "copy"})
        assert clone["AccessorID"] != token["AccessorID"] and clone["SecretID"] != token["SecretID"]
        assert clone["Policies"] == token["Policies"] and clone["Description"] == "copy"
        listed = await dc1.call("ACL/TokenList")
        accessors = [t["AccessorID"] for t in listed]
        assert accessors == sorted(accessors) and ANONYMOUS_TOKEN_ACCESSOR_ID in accessors
        assert {t["SecretID"] for t in listed} == {"<hidden>"}
        anonymous = dc1.call("ACL/TokenDelete", {"accessor": ANONYMOUS_TOKEN_ACCESSOR_ID})
        assert await refused(anonymous, grpc.StatusCode.INVALID_ARGUMENT) == (
            "Delete operation not permitted on the anonymous token")
        own = dc1.call("ACL/TokenDelete", {"accessor": token["AccessorID"]}, token=token["SecretID"])
        assert "request's authorization token" in await refused(own, grpc.StatusCode.INVALID_ARGUMENT)
        assert await dc1.call("ACL/TokenDelete", {"accessor": token["AccessorID"]}) is True
        gone = dc1.call("ACL/TokenDelete", {"accessor": token["AccessorID"]})
        assert await refused(gone, grpc.StatusCode.NOT_FOUND) == "Cannot find token to delete"

    run(scenario)


def test_token_update_replaces_links_and_keeps_secret_locality_and_expiry() -> None:
    """§3.2 and §9 case 17."""
    dc1 = DC("dc1")

    async def scenario() -> None:
        await dc1.call("ACL/PolicySet", {"policy": {"Name": "a"}})
        token = await dc1.call("ACL/TokenSet", {"token": {"Policies": [{"Name": "a"}], "ExpirationTTL": "1h"}})
        assert token["ExpirationTime"].startswith("2026-01-01T01:00:00")
        updated = await dc1.call("ACL/TokenSet", {"token": {"Description": "d"}, "accessor": token["AccessorID"]})
        assert "Policies" not in updated and updated["SecretID"] == token["SecretID"]
        assert updated["ExpirationTime"] == token["ExpirationTime"] and updated["CreateTime"] == token["CreateTime"]
        flip = dc1.call("ACL/TokenSet", {"token": {"Local": True}, "accessor": token["AccessorID"]})
        assert await refused(flip, grpc.StatusCode.INVALID_ARGUMENT) == f"cannot toggle local mode of {token['AccessorID']}"
        dc1.clock = START + datetime.timedelta(hours=2)
        assert (await dc1.call("ACL/TokenRead", {"accessor": token["AccessorID"]}))["token"] is None

    run(scenario)


def test_token_ids_must_be_unused_unreserved_uuids() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        not_uuid = dc1.call("ACL/TokenSet", {"token": {"AccessorID": "x"}})
        assert await refused(not_uuid, grpc.StatusCode.INVALID_ARGUMENT) == "Invalid Token: AccessorID is not a valid UUID"
        reserved = dc1.call("ACL/TokenSet", {"token": {"SecretID": "00000000-0000-0000-0000-000000000009"}})
        assert "reserved" in await refused(reserved, grpc.StatusCode.INVALID_ARGUMENT)
        ttl = dc1.call("ACL/TokenSet", {"token": {"ExpirationTTL": "10s"}})
        assert await refused(ttl, grpc.StatusCode.INVALID_ARGUMENT) == (
            "ExpirationTime cannot be less than 1m0s in the future (was 10s)")  # Consul's text

    run(scenario)


def test_roles() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        await dc1.call("ACL/PolicySet", {"policy": {"Name": "a"}})
        role = await dc1.call("ACL/RoleSet", {"role": {"Name": "ops", "Policies": [{"Name": "a"}],
                                                       "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}]}})
        assert role["Policies"][0]["Name"] == "a" and role["NodeIdentities"] == [{"NodeName": "n1", "Datacenter": "dc1"}]
        token = await dc1.call("ACL/TokenSet", {"token": {"Roles": [{"Name": "ops"}]}})
        assert token["Roles"] == [{"ID": role["ID"], "Name": "ops"}]
        assert [r["Name"] for r in await dc1.call("ACL/RoleList")] == ["ops"]
        assert (await dc1.call("ACL/RoleRead", {"name": "ops"}))["role"]["ID"] == role["ID"]

    run(scenario)


def test_global_writes_at_a_secondary_land_in_the_primary_and_local_tokens_stay() -> None:
    """§3.2: global objects are written in the primary, like config entries."""
    dc1, dc2 = DC("dc1"), DC("dc2")
    dc1.twin.router.peers = {"dc2": dc2.endpoint.handlers()}
    dc2.twin.router.peers = {"dc1": dc1.endpoint.handlers()}

    async def scenario() -> None:
        policy = await dc2.call("ACL/PolicySet", {"policy": {"Name": "a"}})
        assert dc1.twin.state.acl_policy(policy["ID"])[1] is not None
        assert dc2.twin.state.acl_policy(policy["ID"])[1] is None
        token = await dc2.call("ACL/TokenSet", {"token": {"Description": "global"}})
        assert dc1.twin.state.acl_token_by_accessor(token["AccessorID"])[1] is not None
        local = await dc2.call("ACL/TokenSet", {"token": {"Description": "local", "Local": True}})
        assert dc2.twin.state.acl_token_by_accessor(local["AccessorID"])[1] is not None
        assert dc1.twin.state.acl_token_by_accessor(local["AccessorID"])[1] is None

    run(scenario)

"""/v1/acl/*: the texts only the HTTP shape can get wrong (reference/acl.md §3.1), through
`build_app` with the ACL endpoint on the twins."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient, TestServer

from meshfed.server.endpoints.acl import ACLEndpoint
from meshfed.server.http.app import build_app
from tests.twins.server import server_twin
from tests.unit.test_http_routes_internal import make_api


def served(scenario: Callable[[TestClient], Awaitable[None]], *, enabled: bool = True) -> None:
    # The ACL routes read only the ACL endpoint, the state and the query engine: one twin serves all three.
    twin = server_twin("dc1")
    acl = ACLEndpoint(datacenter="dc1", primary_datacenter="dc1", state=twin.state, raft=twin.raft,
                      router=twin.router, queries=twin.queries)
    api = dataclasses.replace(make_api("dc1"), state=twin.state, queries=twin.queries, acl=acl if enabled else None)

    async def run() -> None:
        async with TestClient(TestServer(build_app(api))) as client:
            await scenario(client)

    asyncio.run(run())


def test_acl_routes_answer_401_while_acls_are_disabled() -> None:
    async def scenario(client: TestClient) -> None:
        answer = await client.get("/v1/acl/policies")
        assert answer.status == 401 and await answer.text() == "ACL support disabled"
        assert answer.headers["X-Consul-Index"] == "1"

    served(scenario, enabled=False)


def test_http_only_errors_use_consuls_texts() -> None:
    """§9 cases 9, 16, 21 and the 404 texts of §3.1."""

    async def scenario(client: TestClient) -> None:
        with_id = await client.put("/v1/acl/policy", json={"ID": "x", "Name": "a"})
        assert with_id.status == 400 and await with_id.text() == "Cannot specify the ID when creating a new policy"
        created = await (await client.put("/v1/acl/policy", json={"Name": "a"})).json()
        mismatch = await client.put(f"/v1/acl/policy/{created['ID']}", json={"ID": "other", "Name": "a"})
        assert await mismatch.text() == "Policy ID in URL and payload do not match"
        token = await (await client.put("/v1/acl/token", json={"Policies": [{"Name": "a"}]})).json()
        other = await client.put(f"/v1/acl/token/{token['AccessorID']}", json={"AccessorID": "x"})
        assert other.status == 400 and await other.text() == "Token Accessor ID in URL and payload do not match"
        unknown = await client.get("/v1/acl/token/6a1253d2-1785-24fd-91c2-f8e78c745511")
        assert unknown.status == 404 and await unknown.text() == "Requested token does not exist: ACL not found"
        missing_policy = await client.get("/v1/acl/policy/6a1253d2-1785-24fd-91c2-f8e78c745511")
        assert await missing_policy.text() == "Requested policy does not exist: ACL not found"
        by_name = await (await client.get("/v1/acl/policy/name/global-management")).json()
        assert by_name["ID"] == "00000000-0000-0000-0000-000000000001"
        bad_json = await client.put("/v1/acl/token", data=b"{nope")
        assert bad_json.status == 400 and (await bad_json.text()).startswith("Token decoding failed:")
        wrong_method = await client.post(f"/v1/acl/token/{token['AccessorID']}")
        assert wrong_method.status == 405
        booted = await (await client.put("/v1/acl/bootstrap")).json()
        assert booted["ID"] == booted["SecretID"]
        again = await client.put("/v1/acl/bootstrap")
        assert again.status == 403 and (await again.text()).startswith(
            "Permission denied: ACL bootstrap no longer allowed (reset index: ")
        self_token = await client.get("/v1/acl/token/self", headers={"X-Consul-Token": booted["SecretID"]})
        assert (await self_token.json())["AccessorID"] == booted["AccessorID"]
        assert await (await client.delete(f"/v1/acl/token/{token['AccessorID']}")).json() is True

    served(scenario)

"""The Consul read endpoints at the HTTP door, on the twins: shapes, `?filter=` (applied, and a bad
expression a 400 naming the problem), the 404 body of APIs meshfed lacks, and ACL filtering."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient, TestServer

from meshfed.fsm import FederationStateUpsert
from meshfed.fsm.acl.records import ACLLink as Link
from meshfed.fsm.acl.records import ACLPolicy as Policy
from meshfed.fsm.acl.records import ACLToken as Token
from meshfed.fsm.records import FederationState
from meshfed.server.acl.resolver import ACLResolver
from meshfed.server.http.acl_middleware import FILTERED_HEADER, acl_middleware
from meshfed.server.http.api import Api
from meshfed.server.http.app import build_app
from tests.unit.test_acl_permissions import MANAGEMENT, acl_api
from tests.unit.test_acl_resolver import FakeACLStore
from tests.unit.test_http_routes_internal import make_api

WEB = {"Node": "n1", "Address": "10.0.0.1", "NodeMeta": {"env": "prod"},
       "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Port": 8080},
       "Checks": [{"CheckID": "web-http", "Name": "http", "ServiceID": "web-1", "Status": "critical"},
                  {"CheckID": "serf", "Name": "serf", "Status": "passing"}]}
DB = {"Node": "n2", "Address": "10.0.0.2",
      "Service": {"ID": "db-1", "Service": "db", "Port": 5432},
      "Check": {"CheckID": "db-tcp", "Name": "tcp", "ServiceID": "db-1", "Status": "passing"}}


def served(api: Api, scenario: Callable[[TestClient], Awaitable[None]], store: FakeACLStore | None = None) -> None:
    async def run() -> None:
        if store is None:
            app = build_app(api)
        else:
            config = api.wan.config
            api.wan.config = dataclasses.replace(config, acl=dataclasses.replace(config.acl, enabled=False))  # type: ignore[misc]
            app = build_app(api)
            app.middlewares.append(acl_middleware(api, ACLResolver(store, config.acl, "dc1")))
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(run())


async def _register(client: TestClient, headers: dict[str, str] | None = None) -> None:
    for body in (WEB, DB):
        response = await client.put("/v1/catalog/register", json=body, headers=headers)
        assert response.status == 200, await response.text()


def test_shapes_and_filters_of_the_catalog_and_health_reads() -> None:
    async def scenario(client: TestClient) -> None:
        await _register(client)
        node = await (await client.get("/v1/catalog/node/n1")).json()
        assert node["Node"]["Node"] == "n1" and node["Node"]["Meta"] == {"env": "prod"}
        assert list(node["Services"]) == ["web-1"] and node["Services"]["web-1"]["Tags"] == ["v1"]
        missing = await client.get("/v1/catalog/node/nobody")
        assert missing.status == 200 and await missing.json() is None and int(missing.headers["X-Consul-Index"]) >= 1
        checks = await (await client.get("/v1/health/node/n1")).json()
        assert [(c["CheckID"], c["ServiceTags"]) for c in checks] == [("serf", []), ("web-http", ["v1"])]
        assert [c["CheckID"] for c in await (await client.get("/v1/health/checks/web")).json()] == ["web-http"]
        passing = await (await client.get("/v1/health/state/passing")).json()
        assert [c["CheckID"] for c in passing] == ["serf", "db-tcp"]  # by node, then check id
        bad_state = await client.get("/v1/health/state/sleepy")
        assert (bad_state.status, await bad_state.text()) == (400, "Bad check state")

        async def names(path: str, expression: str) -> list[str]:
            response = await client.get(path, params={"filter": expression})
            assert response.status == 200, await response.text()
            return await response.json()

        assert [n["Node"] for n in await names("/v1/catalog/nodes", "Meta.env == prod")] == ["n1"]
        assert await names("/v1/catalog/services", "ServicePort == 5432") == {"db": []}
        assert await names("/v1/catalog/services", '"v1" in ServiceTags') == {"web": ["v1"]}
        rows = await names("/v1/health/service/web", 'Checks.Status == "critical"')
        assert [r["Service"]["ID"] for r in rows] == ["web-1"]
        assert await names("/v1/health/service/web", "Service.Port != 8080") == []
        assert [r["Node"] for r in await names("/v1/catalog/service/db", "NodeMeta is empty")] == ["n2"]
        assert [c["CheckID"] for c in await names("/v1/health/state/any", "ServiceName == db")] == ["db-tcp"]
        assert list((await names("/v1/catalog/node/n1", "Port == 1"))["Services"]) == []

        # ?node-meta=key:value, alone or with a filter
        async def with_meta(path: str, *pairs: str, expression: str = "") -> object:
            params = [("node-meta", pair) for pair in pairs] + ([("filter", expression)] if expression else [])
            response = await client.get(path, params=params)
            assert response.status == 200, await response.text()
            return await response.json()

        assert [n["Node"] for n in await with_meta("/v1/catalog/nodes", "env:prod")] == ["n1"]  # type: ignore[union-attr]
        assert await with_meta("/v1/catalog/nodes", "env:prod", "rack:r1") == []
        assert await with_meta("/v1/catalog/nodes", "env:prod", expression="Node == n2") == []
        assert await with_meta("/v1/catalog/services", "env:prod") == {"web": ["v1"]}
        assert await with_meta("/v1/catalog/service/db", "env:prod") == []
        assert len(await with_meta("/v1/health/service/web", "env:prod")) == 1  # type: ignore[arg-type]

        bad = await client.get("/v1/catalog/nodes", params={"filter": "Nodes == n1"})
        assert (bad.status, await bad.text()) == (
            400, 'Failed to create boolean expression evaluator: Selector "Nodes" is not valid')
        bad = await client.get("/v1/health/service/web", params={"filter": "Service.Port =="})
        assert bad.status == 400 and "Failed to create boolean expression evaluator: syntax error" in await bad.text()
        bad = await client.get("/v1/config/proxy-defaults", params={"filter": "Name == global"})
        assert (bad.status, await bad.text()) == (400, "filtering not supported for config entry kind=proxy-defaults")

    served(make_api("dc1"), scenario)


def test_datacenters_local_first_then_by_name_and_agent_self() -> None:
    api = make_api("dc2")
    raft = api.catalog._raft  # the twin that make_api wired in
    for name in ("dc3", "dc1", "dc2"):
        raft.apply_now(FederationStateUpsert(FederationState(datacenter=name)))  # type: ignore[attr-defined]

    async def scenario(client: TestClient) -> None:
        assert await (await client.get("/v1/catalog/datacenters")).json() == ["dc2", "dc1", "dc3"]
        me = await (await client.get("/v1/agent/self")).json()
        assert me["Config"]["Datacenter"] == "dc2" and me["Config"]["NodeName"] == "s1"
        assert me["Config"]["PrimaryDatacenter"] == "dc1" and me["Config"]["Server"] is True
        assert me["Stats"]["consul"]["known_datacenters"] == "3"
        assert me["Coord"] is None and me["Meta"] == {"consul-network-segment": ""}

    served(api, scenario)


def test_apis_meshfed_lacks_answer_a_404_that_names_them() -> None:
    async def scenario(client: TestClient) -> None:
        for method, path, name in (("GET", "/v1/kv/app/config", "the KV store"), ("PUT", "/v1/kv/x", "the KV store"),
                                   ("GET", "/v1/kv", "the KV store"), ("PUT", "/v1/session/create", "sessions"),
                                   ("PUT", "/v1/event/fire/deploy", "user events"),
                                   ("GET", "/v1/query", "prepared queries"), ("PUT", "/v1/txn", "transactions")):
            response = await client.request(method, path)
            text = await response.text()
            assert response.status == 404, path
            assert text.startswith("Unsupported endpoint: meshfed does not implement Consul's " + name), text
            assert int(response.headers["X-Consul-Index"]) >= 1
        other = await client.get("/v1/kvx")
        assert other.status == 404 and "Unsupported" not in await other.text()

    served(make_api("dc1"), scenario)


def test_new_reads_are_filtered_by_acls() -> None:
    store = FakeACLStore()
    store.put(Policy("p-1", "web-read", rules='service "web" { policy = "read" } node "n1" { policy = "read" }'))
    store.put(Token("a-1", "s-web", policies=(Link("p-1"),)))

    async def scenario(client: TestClient) -> None:
        manage = {"X-Consul-Token": MANAGEMENT}
        await _register(client, manage)
        reader = {"X-Consul-Token": "s-web"}
        state = await client.get("/v1/health/state/any", headers=reader)
        assert [c["CheckID"] for c in await state.json()] == ["serf", "web-http"]
        assert state.headers[FILTERED_HEADER] == "true"
        assert (await client.get("/v1/catalog/node/n2", headers=reader)).status == 403
        node = await client.get("/v1/catalog/node/n1", headers=reader)
        assert list((await node.json())["Services"]) == ["web-1"]
        assert (await client.get("/v1/agent/self", headers=reader)).status == 403
        assert (await client.get("/v1/agent/self", headers=manage)).status == 200
        assert (await client.get("/v1/catalog/datacenters", headers=reader)).status == 200
        assert (await client.get("/v1/kv/x", headers=reader)).status == 404

    served(acl_api(), scenario, store)

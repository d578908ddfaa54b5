"""The /v1/internal/* route table: one module owns it, and the WAN views it moved out of the
federation object answer as before. Driven through `build_app` with endpoints on the twins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from meshfed.replication.loop import ReplicationStatus
from meshfed.server.config.loader import Config
from meshfed.server.endpoints.catalog import CatalogEndpoint
from meshfed.server.endpoints.config_entry import ConfigEntryEndpoint
from meshfed.server.endpoints.connect_ca import ConnectCAEndpoint
from meshfed.server.endpoints.federation_state import FederationStateEndpoint
from meshfed.server.endpoints.intention import IntentionEndpoint
from meshfed.server.endpoints.status import StatusEndpoint
from meshfed.server.http import routes_internal
from meshfed.server.http.api import Api, WanView
from meshfed.server.http.app import build_app
from meshfed.server.metrics import Metrics
from meshfed.server.wan.gateway_locator import GatewayLocator
from tests.twins.server import ServerTwin, server_twin


@dataclass
class WanTwin:
    config: Config
    locator: GatewayLocator
    enabled: bool = True
    replication_statuses: dict[str, ReplicationStatus] = field(default_factory=dict)


def make_api(datacenter: str = "dc2") -> Api:
    twin: ServerTwin = server_twin(datacenter)
    parts: dict[str, Any] = {"state": twin.state, "raft": twin.raft, "router": twin.router, "queries": twin.queries}
    wan = WanTwin(
        config=Config(node_name="s1", datacenter=datacenter, primary_datacenter="dc1"),
        locator=GatewayLocator(datacenter=datacenter, primary_datacenter="dc1", state=twin.state, watches=twin.watches,
                               configured_fallbacks=("10.0.0.1:8443",)),
        replication_statuses={"federation_state": ReplicationStatus("federation_state")},
    )
    return Api(
        datacenter=datacenter, state=twin.state, queries=twin.queries,
        federation=FederationStateEndpoint(primary_datacenter="dc1", **parts),
        catalog=CatalogEndpoint(**parts),
        status=StatusEndpoint(datacenter=datacenter, state=twin.state, raft=twin.raft, queries=twin.queries,
                              router=twin.router),
        config_entries=ConfigEntryEndpoint(datacenter=datacenter, primary_datacenter="dc1", **parts),
        intentions=IntentionEndpoint(primary_datacenter="dc1", **parts),
        connect_ca=ConnectCAEndpoint(primary_datacenter="dc1", datacenter=datacenter, **parts),
        metrics=Metrics(), wan=wan,
    )


def served(scenario: Callable[[TestClient], Awaitable[None]]) -> None:
    async def run() -> None:
        async with TestClient(TestServer(build_app(make_api()))) as client:
            await scenario(client)

    asyncio.run(run())


def test_the_wan_twin_fits_the_view_the_routes_read() -> None:
    wan: WanView = make_api().wan
    assert wan.enabled and wan.config.datacenter == "dc2"


def test_every_internal_route_is_registered_by_one_module() -> None:
    app = build_app(make_api())
    internal = {
        (route.method, route.resource.canonical): route.handler.__module__
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/internal")
    }
    assert set(internal.values()) == {routes_internal.__name__}
    paths = {path for _, path in internal}
    assert {"/v1/internal/federation-states", "/v1/internal/mesh-gateway-mode", "/v1/internal/gateway-locator",
            "/v1/internal/replication"} <= paths


def test_gateway_locator_and_replication_views() -> None:
    async def scenario(client: TestClient) -> None:
        locator = await (await client.get("/v1/internal/gateway-locator")).json()
        assert (locator["Enabled"], locator["Datacenter"], locator["PrimaryDatacenter"]) == (True, "dc2", "dc1")
        assert locator["FallbackDisabled"] is False and "UseReplicationSignal" in locator["Replication"]
        replication = await (await client.get("/v1/internal/replication")).json()
        assert (replication["Datacenter"], replication["Primary"]) == ("dc2", False)
        (row,) = replication["Types"]
        assert (row["Type"], row["Enabled"], row["SourceDatacenter"], row["LagSeconds"]) == (
            "federation_state", True, "dc1", 0.0)

    served(scenario)


def test_mesh_gateway_mode_moved_with_its_400() -> None:
    async def scenario(client: TestClient) -> None:
        answer = await client.get("/v1/internal/mesh-gateway-mode", params={"service": "web", "upstream": "db"})
        assert answer.status == 200 and (await answer.json())["Source"] == "default"
        missing = await client.get("/v1/internal/mesh-gateway-mode", params={"service": "web"})
        assert missing.status == 400 and "'upstream'" in await missing.text()

    served(scenario)

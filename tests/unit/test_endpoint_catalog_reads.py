"""Catalog.* and Health.* reads added for Consul clients (node, gateway services, checks by node,
service and state), on the twins: real state machine and blocking-query engine, a router twin per
datacenter so `?dc=` forwarding runs the other datacenter's endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc
import pytest

from meshfed.fsm import CatalogRegister, CheckUpdate, ServerRegister
from meshfed.fsm.records import HealthCheck, Node, NodeService, ServerInfo
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.endpoints.catalog import CatalogEndpoint
from meshfed.server.leader.membership import catalog_entry, is_published, tagged_addresses
from tests.twins.server import ServerTwin, server_twin


class DC:
    def __init__(self, name: str) -> None:
        self.twin: ServerTwin = server_twin(name)
        self.endpoint = CatalogEndpoint(state=self.twin.state, raft=self.twin.raft, router=self.twin.router,
                                        queries=self.twin.queries)

    def register(self, node: str, service: str | None = None, checks: tuple[tuple[str, str, str], ...] = ()) -> None:
        svc = NodeService(id=f"{service}-1", service=service, tags=("v1",)) if service else None
        records = tuple(HealthCheck(node=node, check_id=cid, status=status, service_id=f"{sname}-1" if sname else "",
                                    service_name=sname) for cid, sname, status in checks)
        self.twin.raft.apply_now(CatalogRegister(node=Node(node=node, address="10.0.0.9", datacenter=self.twin.datacenter),
                                                 service=svc, checks=records))


def federate(*dcs: DC) -> None:
    for dc in dcs:
        dc.twin.router.peers = {other.twin.datacenter: other.endpoint.handlers() for other in dcs if other is not dc}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_checks_by_node_service_and_state() -> None:
    dc1 = DC("dc1")
    dc1.register("n1", "web", (("serf", "", "passing"), ("web-http", "web", "critical")))
    dc1.register("n2", "web", (("serf", "", "passing"), ("web-http", "web", "passing")))
    dc1.register("n3", "db", (("db-tcp", "db", "warning"),))

    def ids(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(row["node"], row["check_id"]) for row in rows]

    _, rows = run(dc1.endpoint.node_checks(RequestHeader(), {"node": "N1"}))  # node names ignore case
    assert ids(rows) == [("n1", "serf"), ("n1", "web-http")]
    _, rows = run(dc1.endpoint.service_checks(RequestHeader(), {"service": "web"}))
    assert ids(rows) == [("n1", "web-http"), ("n2", "web-http")]
    _, rows = run(dc1.endpoint.checks_in_state(RequestHeader(), {"state": "critical"}))
    assert ids(rows) == [("n1", "web-http")]
    _, rows = run(dc1.endpoint.checks_in_state(RequestHeader(), {"state": "any"}))
    assert len(rows) == 5
    _, rows = run(dc1.endpoint.node_checks(RequestHeader(), {"node": "nobody"}))
    assert rows == []


@pytest.mark.parametrize(("method", "body", "message"), [
    ("checks_in_state", {"state": "maintenance"}, "Bad check state"),
    ("checks_in_state", {}, "Bad check state"),
    ("node_checks", {"node": ""}, "Must provide node"),
    ("service_checks", {}, "Must provide service name"),
    ("node_services", {}, "Must provide node"),
    ("gateway_services", {"gateway": ""}, "Must provide gateway name"),
])
def test_bad_reads_are_invalid_argument(method: str, body: Any, message: str) -> None:
    dc1 = DC("dc1")
    with pytest.raises(RPCError) as caught:
        run(getattr(dc1.endpoint, method)(RequestHeader(), body))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and caught.value.message == message


def test_a_blocking_state_read_wakes_when_a_check_turns_critical() -> None:
    dc1 = DC("dc1")
    dc1.register("n1", "web", (("ttl", "web", "passing"),))

    async def scenario() -> None:
        meta, rows = await dc1.endpoint.checks_in_state(RequestHeader(), {"state": "critical"})
        assert rows == []
        waiting = asyncio.create_task(dc1.endpoint.checks_in_state(
            RequestHeader(min_query_index=meta.index, max_query_time=5.0), {"state": "critical"}))
        await asyncio.sleep(0.05)
        assert not waiting.done(), "a blocking read answered before anything changed"
        dc1.twin.raft.apply_now(CheckUpdate(node="n1", check_id="ttl", status="critical"))
        meta2, rows = await asyncio.wait_for(waiting, 2.0)
        assert meta2.index > meta.index and [r["check_id"] for r in rows] == ["ttl"]

    run(scenario())


def test_node_services_of_a_published_server_and_of_an_unknown_node() -> None:
    dc1 = DC("dc1")
    server = ServerInfo("s1", "dc1", "127.0.0.5:8301", "127.0.0.5:8300", "127.0.0.5:8500")
    node, service = catalog_entry(server)
    dc1.twin.raft.apply_now(ServerRegister(server))
    dc1.twin.raft.apply_now(CatalogRegister(node=node, service=service))
    assert not is_published(dc1.twin.state, dataclasses.replace(server, rpc_address="127.0.0.6:8300"))
    assert is_published(dc1.twin.state, server)
    _, found = run(dc1.endpoint.node_services(RequestHeader(), {"node": "S1"}))  # node names ignore case
    assert found["node"]["tagged_addresses"] == {"lan": "127.0.0.5", "wan": "127.0.0.5",
                                                 "lan_ipv4": "127.0.0.5", "wan_ipv4": "127.0.0.5"}
    assert [s["service"] for s in found["services"]] == ["consul"]
    _, found = run(dc1.endpoint.node_services(RequestHeader(), {"node": "missing"}))
    assert found == {"node": None, "services": []}


def test_a_server_published_without_tagged_addresses_is_published_again() -> None:
    dc1 = DC("dc1")
    server = ServerInfo("s1", "dc1", "127.0.0.5:8301", "127.0.0.5:8300", "127.0.0.5:8500")
    node, service = catalog_entry(server)
    dc1.twin.raft.apply_now(ServerRegister(server))
    dc1.twin.raft.apply_now(CatalogRegister(node=dataclasses.replace(node, tagged_addresses={}), service=service))
    assert not is_published(dc1.twin.state, server)


def test_server_tagged_addresses_follow_the_address_family() -> None:
    assert tagged_addresses("::1") == {"lan": "::1", "wan": "::1", "lan_ipv6": "::1", "wan_ipv6": "::1"}
    assert tagged_addresses("s2.internal") == {"lan": "s2.internal", "wan": "s2.internal"}
    node, _ = catalog_entry(ServerInfo("s1", "dc1", "[::1]:8301", "[::1]:8300", "[::1]:8500"))
    assert node.tagged_addresses["lan_ipv6"] == "::1"


def test_reads_naming_another_datacenter_run_there() -> None:
    dc1, dc2 = DC("dc1"), DC("dc2")
    federate(dc1, dc2)
    dc2.register("far", "api", (("api-http", "api", "warning"),))
    header = RequestHeader(datacenter="dc2")
    _, rows = run(dc1.endpoint.checks_in_state(header, {"state": "warning"}))
    assert [r["node"] for r in rows] == ["far"]
    _, rows = run(dc1.endpoint.node_checks(header, {"node": "far"}))
    assert [r["check_id"] for r in rows] == ["api-http"]
    _, found = run(dc1.endpoint.node_services(header, {"node": "far"}))
    assert found["node"]["datacenter"] == "dc2"
    _, rows = run(dc1.endpoint.gateway_services(header, {"gateway": "ingress"}))
    assert rows == []
    _, pairs = run(dc1.endpoint.service_instances(header, {}))
    assert [(n["node"], s["service"]) for n, s in pairs] == [("far", "api")]
    assert ("Health/ChecksInState", "dc2", False) in dc1.twin.router.calls
    _, rows = run(dc1.endpoint.checks_in_state(RequestHeader(), {"state": "warning"}))
    assert rows == [], "dc1 itself has no checks"

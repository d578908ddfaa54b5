"""The Consul endpoints clients hit (issue #12 item 4), through py-consul against a real 3-server DC:
agent self, datacenters, catalog node(s) with the servers' tagged addresses, health by node,
service and state (blocking too), `?filter=` applied, the leader gauge, the unsupported-API 404s,
and the config-entry behaviours Consul's API tests expect."""

from __future__ import annotations

import threading

import consul
import consul.exceptions
import pytest
import requests

from .harness import Datacenter, wait_until


@pytest.fixture
def dc1(make_dc) -> Datacenter:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1")
    dc.start()
    return dc


def _register(client: consul.Consul, web_check: str = "critical") -> None:
    # py-consul sends node_meta as a `node-meta` query parameter, which Consul's register ignores,
    # so the node with meta is registered with Consul's body key directly.
    body = {"Node": "web-node", "Address": "10.9.0.1", "NodeMeta": {"env": "prod"},
            "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080},
            "Check": {"CheckID": "web-http", "Name": "http", "ServiceID": "web-1", "Status": web_check}}
    response = requests.put(f"http://{client.http.host}:{client.http.port}/v1/catalog/register", json=body, timeout=5)
    assert response.status_code == 200, response.text
    assert client.catalog.register(
        "db-node", "10.9.0.2",
        service={"id": "db-1", "service": "db", "port": 5432},
        check={"checkid": "db-tcp", "name": "tcp", "serviceid": "db-1", "status": "passing"},
    )


def test_py_consul_reads_agent_catalog_and_health(dc1: Datacenter) -> None:
    follower = dc1.followers()[0]
    c = consul.Consul(host=follower.address, port=8500)

    me = c.agent.self()
    assert me["Config"]["Datacenter"] == "dc1" and me["Config"]["NodeName"] == follower.node
    assert me["Member"]["Name"] == follower.node and me["Stats"]["consul"]["leader"] == "false"
    assert c.catalog.datacenters() == ["dc1"]

    # The servers publish themselves as catalog nodes with Consul's tagged addresses.
    def servers_listed() -> bool:
        _, nodes = c.catalog.nodes()
        return {s.node for s in dc1.servers} <= {n["Node"] for n in nodes}

    wait_until(servers_listed, timeout=10, what="servers in /v1/catalog/nodes")
    _, nodes = c.catalog.nodes()
    by_name = {n["Node"]: n for n in nodes}
    for server in dc1.servers:
        assert by_name[server.node]["Address"] == server.address
        assert by_name[server.node]["TaggedAddresses"] == {
            "lan": server.address, "wan": server.address, "lan_ipv4": server.address, "wan_ipv4": server.address}
    _, server_node = c.catalog.node(dc1.servers[0].node)
    assert server_node["Node"]["Node"] == dc1.servers[0].node and list(server_node["Services"]) == ["consul"]
    assert c.catalog.node("nobody")[1] is None  # 200 with null, as Consul

    _register(c)
    _, node = c.catalog.node("web-node")
    assert node["Node"]["Meta"] == {"env": "prod"} and node["Services"]["web-1"]["Tags"] == ["v1", "primary"]
    _, checks = c.health.node("web-node")
    assert [ch["CheckID"] for ch in checks] == ["web-http"]
    _, checks = c.health.checks("db")
    assert [(ch["Node"], ch["Status"]) for ch in checks] == [("db-node", "passing")]
    _, critical = c.health.state("critical")
    assert [ch["CheckID"] for ch in critical] == ["web-http"]
    _, everything = c.health.state("any")
    assert {ch["CheckID"] for ch in everything} >= {"web-http", "db-tcp"}
    assert c.catalog.gateway_services("ingress") == []  # py-consul returns the body alone here

    # ?filter= is applied, not ignored.
    _, nodes = c.catalog.nodes(filter_expr='Meta.env == "prod"')
    assert [n["Node"] for n in nodes] == ["web-node"]
    _, nodes = c.catalog.nodes(node_meta={"env": "prod"})
    assert [n["Node"] for n in nodes] == ["web-node"]
    _, services = c.catalog.services(filter_expr='"primary" in ServiceTags')
    assert services == {"web": ["primary", "v1"]}
    _, rows = c.health.service("web", filter_expr='Checks.Status == "critical" and Service.Port == 8080')
    assert [r["Service"]["ID"] for r in rows] == ["web-1"]
    _, rows = c.health.service("web", filter_expr="Service.Port != 8080")
    assert rows == []
    _, rows = c.health.state("any", filter_expr="ServiceName == db")
    assert [ch["CheckID"] for ch in rows] == ["db-tcp"]
    bad = requests.get(f"{follower.http}/v1/catalog/nodes", params={"filter": "Meta.env = prod"}, timeout=5)
    assert bad.status_code == 400
    assert bad.text.startswith("Failed to create boolean expression evaluator: syntax error")
    with pytest.raises(consul.exceptions.BadRequest):
        c.health.service("web", filter_expr="Service.Nope == 1")


def test_health_state_blocks_until_a_check_changes(dc1: Datacenter) -> None:
    c = consul.Consul(host=dc1.followers()[0].address, port=8500)
    _register(c)
    index, rows = c.health.state("passing")
    assert "web-http" not in {r["CheckID"] for r in rows}
    answered: dict[str, object] = {}

    def block() -> None:
        answered["result"] = c.health.state("passing", index=index, wait="20s")

    waiter = threading.Thread(target=block)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive(), "the blocking query answered before anything changed"
    _register(c, web_check="passing")
    waiter.join(10)
    assert not waiter.is_alive()
    new_index, rows = answered["result"]  # type: ignore[misc]
    assert int(new_index) > int(index) and "web-http" in {r["CheckID"] for r in rows}


def test_leader_gauge_unsupported_apis_and_config_entry_decoding(dc1: Datacenter) -> None:
    leader = dc1.leader()

    def gauge(server) -> float:  # type: ignore[no-untyped-def]
        text = requests.get(f"{server.http}/v1/agent/metrics?format=prometheus", timeout=5).text
        line = next(line for line in text.splitlines() if line.startswith("consul_server_isLeader "))
        return float(line.split()[1])

    assert gauge(leader) == 1.0
    assert all(gauge(server) == 0.0 for server in dc1.followers())
    scraped = requests.get(f"{leader.http}/metrics", timeout=5).text
    assert "consul_server_isLeader 1.0" in scraped

    c = consul.Consul(host=leader.address, port=8500)
    assert c.kv.get("app/config")[1] is None  # what py-consul makes of any 404
    for method, path, what in (("GET", "/v1/kv/app/config", "KV store"), ("PUT", "/v1/session/create", "sessions"),
                               ("GET", "/v1/event/list", "user events"), ("GET", "/v1/query", "prepared queries"),
                               ("PUT", "/v1/txn", "transactions")):
        response = requests.request(method, f"{leader.http}{path}", timeout=5)
        assert response.status_code == 404 and "Unsupported endpoint" in response.text and what in response.text

    assert c.config.set("service-defaults", "dns", {"Protocol": "udp"})
    assert c.config.get("service-defaults", "dns")["Protocol"] == "udp"
    bad = requests.put(f"{leader.http}/v1/config", json={"Kind": "service-defaults", "Name": "x", "Prtocol": "tcp"},
                       timeout=5)
    assert bad.status_code == 400 and bad.text.startswith("Request decoding failed: ")

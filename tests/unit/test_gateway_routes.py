"""The mesh gateway's SNI routing table (DESIGN §7) and what it learns from the servers' JSON."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshfed.rpc.gateway_routes import RoutingTable, ServerName, parse_server_name
from meshfed.server.dataplane.gateway import local_servers, remote_gateways

TABLE = RoutingTable(
    datacenter="dc1",
    local_servers={"s1": ("10.0.0.1", 8300), "s2": ("10.0.0.2", 8300)},
    remote_gateways={"dc2": [("198.51.100.7", 443)]},
)


def test_names() -> None:
    assert parse_server_name("server.dc1.consul", "consul") == ServerName("dc1", "")
    assert parse_server_name("S1.Server.DC1.consul.", "consul.") == ServerName("dc1", "s1")
    for junk in (None, "", "consul", "server.consul", "x.server.dc1.other", "a.b.server.dc1.consul", "s1.srv.dc1.consul"):
        assert parse_server_name(junk, "consul") is None


def test_routes() -> None:
    assert TABLE.resolve("s2.server.dc1.consul") == ("local:s2", [("10.0.0.2", 8300)])
    assert TABLE.resolve("server.dc1.consul") == ("local:any", [("10.0.0.1", 8300), ("10.0.0.2", 8300)])
    assert TABLE.resolve("server.dc2.consul") == ("remote:dc2", [("198.51.100.7", 443)])
    assert TABLE.resolve("s9.server.dc2.consul") == ("remote:dc2", [("198.51.100.7", 443)])
    assert TABLE.resolve("s9.server.dc1.consul") is None
    assert TABLE.resolve("server.dc3.consul") is None
    assert RoutingTable("dc1").resolve("server.dc1.consul") is None


@given(st.text(max_size=80))
def test_resolve_never_raises(sni: str) -> None:
    TABLE.resolve(sni)


def test_learning_from_the_servers_json() -> None:
    rows = [{"Node": "S1", "Address": "10.0.0.1", "ServiceAddress": "10.0.0.1", "ServicePort": 8300},
            {"Node": "s2", "Address": "10.0.0.2", "ServiceAddress": "", "ServicePort": 8300},
            {"Node": "s3", "Address": "10.0.0.3", "ServicePort": 0}]
    assert local_servers(rows) == {"s1": ("10.0.0.1", 8300), "s2": ("10.0.0.2", 8300)}

    def csn(address: str, meta: dict[str, str], status: str = "passing") -> dict[str, object]:
        return {"Node": {"Node": "g", "Address": "10.9.9.9"},
                "Service": {"Address": "10.9.9.9", "Port": 8443, "Meta": meta,
                            "TaggedAddresses": {"wan": {"Address": address, "Port": 443}}},
                "Checks": [{"Status": status}]}

    wanfed = {"consul-wan-federation": "1"}
    learned = remote_gateways({"dc1": [csn("1.1.1.1", wanfed)], "dc2": [csn("2.2.2.2", wanfed), csn("2.2.2.3", {}),
                               csn("2.2.2.4", wanfed, "critical")], "DC3": [csn("3.3.3.3", {})]}, "dc1")
    assert learned == {"dc2": [("2.2.2.2", 443)]}


def test_service_names_route_by_datacenter_once_the_trust_domain_is_known() -> None:
    td = "7f42f496-fbc7-8692-05ed-334aa5340c1e.consul"
    table = RoutingTable(datacenter="dc1", remote_gateways={"dc2": [("198.51.100.7", 443)]}, trust_domain=td)
    assert table.resolve(f"web.default.dc2.internal.{td}") == ("service-remote:dc2", [("198.51.100.7", 443)])
    assert table.resolve(f"web.default.dc1.internal.{td}") is None  # our own: the gateway asks the catalog
    assert table.local_service(f"web.default.dc1.internal.{td}") == "web"
    assert table.local_service(f"web.default.dc2.internal.{td}") is None
    assert table.resolve(f"web.default.dc3.internal.{td}") is None  # no gateway known there
    assert table.resolve("web.default.dc2.internal.other.consul") is None  # another cluster's name
    untrusting = RoutingTable(datacenter="dc1", remote_gateways={"dc2": [("198.51.100.7", 443)]})
    assert untrusting.resolve(f"web.default.dc2.internal.{td}") is None


def test_gateway_log_line_says_what_changed_not_the_whole_table() -> None:
    from meshfed.server.dataplane.gateway import GATEWAY_CHANGES_LOGGED, describe_gateway_changes

    old = {"dc2": [("2.2.2.2", 443)], "dc3": [("3.3.3.3", 443)], "dc4": [("4.4.4.4", 443)]}
    new = {"dc2": [("2.2.2.2", 443), ("2.2.2.3", 443)], "dc4": [("4.4.4.5", 443)], "dc5": [("5.5.5.5", 443)]}
    assert describe_gateway_changes(old, new) == "dc2=1->2; -dc3; dc4 addresses changed; +dc5=1"
    assert describe_gateway_changes(new, new) == ""
    many = {f"dc{i:04d}": [("10.0.0.1", 443)] for i in range(1000)}
    line = describe_gateway_changes({}, many)
    assert line.endswith(f"; and {1000 - GATEWAY_CHANGES_LOGGED} more")
    assert len(line) < 200

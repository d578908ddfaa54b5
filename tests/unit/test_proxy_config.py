"""The Connect proxy's pure decisions: configuration from a registration or flags, the first hop
by mesh-gateway mode (reference/mesh-dataplane.md §6), and which address of an instance to dial."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.server.dataplane.proxy_config import (
    HOP_DIRECT,
    HOP_LOCAL_GATEWAY,
    HOP_REMOTE_GATEWAY,
    ProxyConfigError,
    Upstream,
    first_hop,
    from_flags,
    from_registration,
    instance_address,
    parse_upstream_flag,
)

SIDECAR = {
    "Kind": "connect-proxy", "ID": "web-sidecar-proxy", "Service": "web-sidecar-proxy", "Port": 21000,
    "Proxy": {
        "DestinationServiceName": "web", "DestinationServiceID": "web", "LocalServicePort": 8080,
        "MeshGateway": {"Mode": "local"},
        "Upstreams": [{"DestinationName": "socat", "Datacenter": "dc1", "LocalBindPort": 8181,
                       "MeshGateway": {"Mode": "remote"}}],
    },
}


def test_a_sidecar_registration_is_the_whole_configuration() -> None:
    cfg = from_registration(SIDECAR)
    assert (cfg.service, cfg.public_port, cfg.local_service_port, cfg.mode) == ("web", 21000, 8080, "local")
    assert cfg.upstreams == (Upstream("socat", 8181, "dc1", "127.0.0.1", "remote"),)


@pytest.mark.parametrize("broken,field", [
    ({**SIDECAR, "Kind": ""}, "Kind"),
    ({**SIDECAR, "Proxy": {**SIDECAR["Proxy"], "DestinationServiceName": ""}}, "DestinationServiceName"),
    ({**SIDECAR, "Port": 70000}, "Port"),
    ({**SIDECAR, "Proxy": {**SIDECAR["Proxy"], "Upstreams": [{"DestinationName": "x"}]}}, "Upstreams[0].LocalBindPort"),
])
def test_a_broken_registration_names_the_field(broken: dict[str, Any], field: str) -> None:
    with pytest.raises(ProxyConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        from_registration(broken)


def test_flags() -> None:
    cfg = from_flags("web", ["socat:8181:dc1", "db:5432"], "127.0.0.5:21000", "127.0.0.5:8080")
    assert [(u.destination, u.local_bind_port, u.datacenter) for u in cfg.upstreams] == [
        ("socat", 8181, "dc1"), ("db", 5432, "")]
    assert (cfg.public_address, cfg.public_port, cfg.local_service_port) == ("127.0.0.5", 21000, 8080)
    for bad in ("socat", "socat:x", ":80", "a:1:b:c"):
        with pytest.raises(ProxyConfigError, match="-upstream"):
            parse_upstream_flag(bad)
    with pytest.raises(ProxyConfigError, match="-service-addr"):
        from_flags("web", [], "127.0.0.5:21000")


@pytest.mark.parametrize("local,upstream,mode,hop", [
    ("dc2", "", "remote", HOP_DIRECT),  # same DC: the mode does not apply
    ("dc2", "DC2", "local", HOP_DIRECT),
    ("dc2", "dc1", "local", HOP_LOCAL_GATEWAY),
    ("dc2", "dc1", "remote", HOP_REMOTE_GATEWAY),
    ("dc2", "dc1", "none", HOP_DIRECT),
    ("dc2", "dc1", "default", HOP_DIRECT),  # unset goes direct across DCs, as Consul's
    ("dc2", "dc1", "", HOP_DIRECT),
])
def test_first_hop_by_mode(local: str, upstream: str, mode: str, hop: str) -> None:
    assert first_hop(local, upstream, mode) == hop


def test_instance_address_prefers_wan_across_dcs_then_lan_then_service_then_node() -> None:
    row = {"Node": {"Address": "10.0.0.1"}, "Service": {"Port": 21000, "Address": "", "TaggedAddresses": {
        "lan": {"Address": "10.0.0.2", "Port": 21001}, "wan": {"Address": "198.51.100.2", "Port": 443}}}}
    assert instance_address(row, wan=True) == ("198.51.100.2", 443)
    assert instance_address(row, wan=False) == ("10.0.0.2", 21001)
    plain = {"Node": {"Address": "10.0.0.1"}, "Service": {"Port": 21000, "Address": ""}}
    assert instance_address(plain, wan=True) == ("10.0.0.1", 21000)
    assert instance_address({"Node": {}, "Service": {"Port": 0}}, wan=False) is None

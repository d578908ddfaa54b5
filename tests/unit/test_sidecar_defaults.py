"""Consul's defaults for Connect.SidecarService (reference/mesh-dataplane.md §1)."""

from __future__ import annotations

import pytest

from meshfed.server.endpoints.sidecar import (
    SIDECAR_MAX_PORT,
    SIDECAR_MIN_PORT,
    SidecarError,
    pick_port,
    sidecar_registration,
    without_sidecar_spec,
)

WEB = {"Name": "web", "ID": "web-1", "Port": 8080, "Address": "10.0.0.5", "Tags": ["v1"], "Meta": {"team": "a"},
       "Connect": {"SidecarService": {"Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 5432}]}}}}


def test_defaults_come_from_the_parent() -> None:
    sidecar = sidecar_registration(WEB, taken_ports=set())
    assert sidecar is not None
    assert (sidecar["ID"], sidecar["Name"], sidecar["Kind"], sidecar["Port"]) == (
        "web-1-sidecar-proxy", "web-sidecar-proxy", "connect-proxy", SIDECAR_MIN_PORT)
    assert (sidecar["Address"], sidecar["Tags"], sidecar["Meta"]) == ("10.0.0.5", ["v1"], {"team": "a"})
    proxy = sidecar["Proxy"]
    assert (proxy["DestinationServiceName"], proxy["DestinationServiceID"]) == ("web", "web-1")
    assert (proxy["LocalServiceAddress"], proxy["LocalServicePort"]) == ("127.0.0.1", 8080)
    assert proxy["Upstreams"] == [{"DestinationName": "db", "LocalBindPort": 5432}]


def test_ports_skip_taken_ones_keep_a_previous_one_and_run_out_with_consuls_error() -> None:
    assert pick_port({SIDECAR_MIN_PORT, SIDECAR_MIN_PORT + 1}, None) == SIDECAR_MIN_PORT + 2
    assert pick_port({SIDECAR_MIN_PORT}, previous=21007) == 21007
    with pytest.raises(SidecarError, match=r"none left in the configured range \[21000, 21255\]"):
        pick_port(set(range(SIDECAR_MIN_PORT, SIDECAR_MAX_PORT + 1)), None)


def test_no_sidecar_asked_none_built_and_the_id_cannot_be_overridden() -> None:
    assert sidecar_registration({"Name": "web"}, set()) is None
    with pytest.raises(SidecarError, match="always 'web-sidecar-proxy'"):
        sidecar_registration({"Name": "web", "Connect": {"SidecarService": {"ID": "mine"}}}, set())
    with pytest.raises(SidecarError, match="Missing service name"):
        sidecar_registration({"Connect": {"SidecarService": {}}}, set())


def test_the_stored_parent_drops_the_sidecar_request_only() -> None:
    stored = without_sidecar_spec({"Name": "web", "Connect": {"SidecarService": {}, "Native": False}})
    assert stored["Connect"] == {"Native": False}

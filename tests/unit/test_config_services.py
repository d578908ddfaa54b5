"""Service definitions in config files (`service`, `services`): Consul's snake_case converted to the
JSON registration shape, user maps kept as written, and every refusal naming file and key."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshfed.server.config import ConfigError, load
from meshfed.server.config.services import convert_definitions
from meshfed.server.http.agent_registration import registration_rows
from meshfed.server.reload import changed_keys, plan

KEY = base64.b64encode(bytes(range(32))).decode()
BASE = f'node_name = "s1"\ndata_dir = "/var/lib/meshfed"\nencrypt = "{KEY}"\n'

SOCAT_HCL = """
service {
  name = "socat"
  port = 8181
  meta { Team_Name = "edge" }
  connect { sidecar_service { proxy {
    upstreams = [{ destination_name = "x", local_bind_port = 9191, datacenter = "dc1",
                   mesh_gateway { mode = "local" }, config { connect_timeout_ms = 500 } }]
    config { Envoy_Extra = "kept" }
  } } }
}
"""
SOCAT_JSON = {
    "Name": "socat", "Port": 8181, "Meta": {"Team_Name": "edge"},
    "Connect": {"SidecarService": {"Proxy": {
        "Upstreams": [{"DestinationName": "x", "LocalBindPort": 9191, "Datacenter": "dc1",
                       "MeshGateway": {"Mode": "local"}, "Config": {"connect_timeout_ms": 500}}],
        "Config": {"Envoy_Extra": "kept"}}}},
}


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., str]:
    counter = iter(range(1000))

    def write_file(text: str, extension: str = ".hcl") -> str:
        path = tmp_path / f"config{next(counter)}{extension}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write_file


CONVERSIONS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("nested blocks and an upstream list", {"name": "web", "id": "web-1", "port": 80, "connect": {"sidecar_service": {
        "port": 21500, "proxy": {"upstreams": [{"destination_name": "a", "local_bind_port": 1},
                                               {"destination_name": "b", "local_bind_port": 2}],
                                 "mesh_gateway": {"mode": "remote"}}}}},
     {"Name": "web", "ID": "web-1", "Port": 80, "Connect": {"SidecarService": {
         "Port": 21500, "Proxy": {"Upstreams": [{"DestinationName": "a", "LocalBindPort": 1},
                                                {"DestinationName": "b", "LocalBindPort": 2}],
                                  "MeshGateway": {"Mode": "remote"}}}}}),
    ("meta and proxy config keep their keys", {"name": "a", "meta": {"snake_key": "v", "Camel": "w"},
                                              "proxy": {"destination_service_name": "x", "config": {"a_b": {"c_d": 1}}}},
     {"Name": "a", "Meta": {"snake_key": "v", "Camel": "w"},
      "Proxy": {"DestinationServiceName": "x", "Config": {"a_b": {"c_d": 1}}}}),
    ("tagged addresses: names are data, fields are not", {"name": "a", "tagged_addresses": {"lan_ipv4": {"address": "10.0.0.1", "port": 1}}},
     {"Name": "a", "TaggedAddresses": {"lan_ipv4": {"Address": "10.0.0.1", "Port": 1}}}),
    ("checks: id becomes CheckID, header names kept", {"name": "a", "checks": [{"id": "c1", "ttl": "10s", "header": {"x-token_a": ["1"]}}],
                                                      "enable_tag_override": True, "weights": {"passing": 3, "warning": 1}},
     {"Name": "a", "Checks": [{"CheckID": "c1", "TTL": "10s", "Header": {"x-token_a": ["1"]}}], "EnableTagOverride": True,
      "Weights": {"Passing": 3, "Warning": 1}}),
    ("JSON spelling loads as well", {"Name": "a", "Connect": {"SidecarService": {"Proxy": {"Upstreams": [{"LocalBindPort": 5}]}}}},
     {"Name": "a", "Connect": {"SidecarService": {"Proxy": {"Upstreams": [{"LocalBindPort": 5}]}}}}),
]


@pytest.mark.parametrize(("raw", "expected"), [(raw, expected) for _, raw, expected in CONVERSIONS],
                         ids=[name for name, _, _ in CONVERSIONS])
def test_conversion_to_the_registration_shape(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    (definition,) = convert_definitions(raw, "f.hcl", "service")
    assert definition.registration == expected
    assert (definition.source, definition.key) == ("f.hcl", "service")


REFUSALS = [
    ("misspelled nested key", {"name": "a", "connect": {"sidecar_service": {"proxy": {"upstreams": [
        {"destination_name": "x", "local_bind_prot": 1}]}}}},
     "service.connect.sidecar_service.proxy.upstreams[0].local_bind_prot", "did you mean local_bind_port"),
    ("misspelled top key", {"name": "a", "prot": 1}, "service.prot", "did you mean port"),
    ("wrong type", {"name": "a", "port": "80"}, "service.port", "must be an integer"),
    ("meta values are strings", {"name": "a", "meta": {"k": 1}}, "service.meta", "map of strings"),
    ("no name", {"port": 1}, "service.name", "required"),
    ("sidecar inside a sidecar", {"name": "a", "connect": {"sidecar_service": {"connect": {}}}},
     "service.connect.sidecar_service.connect", "cannot have a connect block"),
]


@pytest.mark.parametrize(("raw", "key", "reason"), [(raw, key, reason) for _, raw, key, reason in REFUSALS],
                         ids=[name for name, *_ in REFUSALS])
def test_a_bad_definition_is_refused_naming_file_and_key(raw: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        convert_definitions(raw, "f.hcl", "service")
    assert (error.value.source, error.value.key) == ("f.hcl", key)
    assert reason in error.value.reason


def test_hcl_and_json_files_load_and_services_add_up_across_files(write: Callable[..., str]) -> None:
    first = write(BASE + SOCAT_HCL)
    second = write(json.dumps({"services": [{"name": "db", "port": 5432}, {"Name": "cache"}]}), ".json")
    third = write(json.dumps({"service": {"name": "api", "id": "api-2"}}), ".json")
    config = load([first, second, third])
    assert [d.registration for d in config.services][0] == SOCAT_JSON
    assert [(d.service_id, d.source, d.key) for d in config.services] == [
        ("socat", first, "service"), ("db", second, "services[0]"), ("cache", second, "services[1]"),
        ("api-2", third, "service")]


def test_the_converted_definition_registers_a_sidecar_with_its_upstream() -> None:
    (definition,) = convert_definitions(json.loads(json.dumps(SOCAT_JSON)), "f.json", "service")
    rows = registration_rows(definition.registration, node="n1", address="127.0.0.1", datacenter="dc1",
                             taken_ports=(), previous_sidecar_port=None)
    sidecar = rows[1]["service"]
    assert (sidecar["id"], sidecar["kind"], sidecar["port"]) == ("socat-sidecar-proxy", "connect-proxy", 21000)
    assert sidecar["proxy"]["Upstreams"] == SOCAT_JSON["Connect"]["SidecarService"]["Proxy"]["Upstreams"]


def test_a_misspelled_key_in_a_file_names_that_file_and_the_key(write: Callable[..., str]) -> None:
    good = write(BASE)
    bad = write('service { name = "a"\n connect { sidecar_servce {} } }\n')
    with pytest.raises(ConfigError, match=r"did you mean sidecar_service") as error:
        load([good, bad])
    assert (error.value.source, error.value.key) == (bad, "service.connect.sidecar_servce")


def test_registration_checks_run_at_load_and_duplicate_ids_are_refused(write: Callable[..., str]) -> None:
    out_of_range = write(BASE + 'service { name = "a"\n port = 70000 }\n')
    with pytest.raises(ConfigError, match="Port") as error:
        load([out_of_range])
    assert (error.value.source, error.value.key) == (out_of_range, "service")
    proxy = write(BASE + 'service { name = "p"\n kind = "connect-proxy"\n port = 1 }\n')
    with pytest.raises(ConfigError, match="DestinationServiceName must be set"):
        load([proxy])
    first, second = write(BASE + 'service { name = "a" }\n'), write('services = [{ name = "b", id = "a" }]\n')
    with pytest.raises(ConfigError, match="service ID 'a' is already defined in") as error:
        load([first, second])
    assert (error.value.source, error.value.key) == (second, "services[0]")
    assert f"{first} (service)" in error.value.reason


def test_services_change_live_on_reload(write: Callable[..., str]) -> None:
    path = write(BASE + SOCAT_HCL)
    old = load([path])
    Path(path).write_text(BASE + 'service { name = "other" }\n', encoding="utf-8")
    new = load([path])
    assert changed_keys(old, new) == ["services"]
    assert plan(old, new).applied == ("services",) and plan(old, new).needs_restart == ()

"""A typical Consul server config file loads: keys meshfed does not use are accepted with ONE
warning listing them all; a misspelled key is still an error with a suggestion (issue #12 item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshfed.server.config import ConfigError, config_warnings, load

CONSUL_SERVER_HCL = """
node_name = "s1"
datacenter = "dc1"
data_dir = "/tmp/unused-keys"
server = true
log_level = "INFO"
leave_on_terminate = true
ui_config { enabled = true }
addresses { http = "0.0.0.0" }
ports {
  http = 8500
  grpc = 8502
  grpc_tls = 8503
}
connect { enabled = true }
tls {
  defaults { tls_min_version = "TLSv1_2" }
  grpc { use_auto_cert = false }
}
"""


def test_consul_keys_meshfed_does_not_use_load_with_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "server.hcl"
    path.write_text(CONSUL_SERVER_HCL)
    config = load([str(path)], dev=True)
    assert config.unused_keys == ("addresses", "ports.grpc", "ports.grpc_tls",
                                  "tls.defaults.tls_min_version", "tls.grpc", "ui_config")
    assert config.ports.http == 8500 and config.connect.enabled and config.leave_on_terminate  # used keys apply
    listed = [w for w in config_warnings(config) if "not used" in w]
    assert len(listed) == 1
    assert "ports.grpc, ports.grpc_tls" in listed[0] and "ui_config" in listed[0]


def test_unused_keys_from_several_files_are_one_warning(tmp_path: Path) -> None:
    one, two = tmp_path / "a.json", tmp_path / "b.json"
    one.write_text(json.dumps({"ui_config": {"enabled": True}}))
    two.write_text(json.dumps({"ports": {"grpc": 8502}, "ui_config": {"enabled": False}}))
    config = load([str(one), str(two)], {"node_name": "s1"}, dev=True)
    assert config.unused_keys == ("ports.grpc", "ui_config")
    assert sum("not used" in w for w in config_warnings(config)) == 1


def test_no_unused_keys_no_warning(tmp_path: Path) -> None:
    config = load([], {"node_name": "s1"}, dev=True)
    assert config.unused_keys == ()
    assert not any("not used" in w for w in config_warnings(config))


@pytest.mark.parametrize("raw, key, suggestion", [
    ({"ui_confg": {"enabled": True}}, "ui_confg", "ui_config"),
    ({"leave_on_terminat": True}, "leave_on_terminat", "leave_on_terminate"),
    ({"ports": {"grcp": 8502}}, "ports.grcp", "ports.grpc"),
    ({"ports": {"htp": 8500}}, "ports.htp", "ports.http"),
])
def test_a_misspelled_key_is_still_an_error_with_a_suggestion(tmp_path: Path, raw: dict, key: str,
                                                               suggestion: str) -> None:
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as caught:
        load([str(path)], {"node_name": "s1"}, dev=True)
    assert caught.value.source == str(path) and caught.value.key == key
    assert f"did you mean {suggestion}?" in caught.value.reason

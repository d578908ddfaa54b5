"""Agent configuration: files, merging, defaults and every way a configuration is refused.

Every refusal must say which file (or "command line"), which dotted key and why (DESIGN.md §11).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshfed.server.config import (
    COMMAND_LINE,
    DEFAULTS,
    Config,
    ConfigError,
    ConnectConfig,
    Ports,
    TelemetryConfig,
    TLSConfig,
    config_warnings,
    generate_key,
    load,
    normalise_retry_join,
    validate_key,
)
from meshfed.server.config import loader as config_module

KEY = base64.b64encode(bytes(range(32))).decode()
BASE = {"node_name": "s1", "data_dir": "/var/lib/meshfed", "encrypt": KEY}


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], str]:
    counter = iter(range(1000))

    def write_file(text: str, extension: str = ".hcl") -> str:
        path = tmp_path / f"config{next(counter)}{extension}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write_file


def base_hcl() -> str:
    return f'node_name = "s1"\ndata_dir = "/var/lib/meshfed"\nencrypt = "{KEY}"\n'


FULL_HCL = f"""
node_name = "s1"
datacenter = "dc2"
primary_datacenter = "dc1"
data_dir = "/var/lib/meshfed"
bind_addr = "127.0.1.1"
advertise_addr = "10.0.0.1"
client_addr = "0.0.0.0"
ports {{
  http = 9500
  server = 9300
  raft = 9301
}}
server = true
bootstrap_expect = 3
retry_join = ["10.0.0.2", "10.0.0.3:7000"]
encrypt = "{KEY}"
domain = "Mesh.Example."
log_level = "DEBUG"
primary_gateways = ["gw1.dc1.example.com:8443", "192.0.2.1:443"]
primary_gateways_interval = "45s"
disable_primary_gateway_fallback = true
connect {{
  enabled = true
  enable_mesh_gateway_wan_federation = true
}}
tls {{
  defaults {{
    ca_file = "/tls/ca.pem"
    cert_file = "/tls/server.pem"
    key_file = "/tls/server-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }}
  internal_rpc {{
    verify_server_hostname = true
  }}
}}
telemetry {{
  prometheus_retention_time = "2m"
  disable_hostname = false
  metrics_prefix = "meshfed"
}}
performance {{
  raft_multiplier = 5
}}
federation_state_ttl = "48h"
federation_state_refresh_interval = "5m"
federation_state_anti_entropy_sync_interval = 2
replication_rate = 2.5
replication_burst = 10
replication_apply_limit = 50
raft_snapshot_threshold = 1000
raft_snapshot_interval = "1m30s"
"""

FULL_JSON = {
    "node_name": "s1",
    "datacenter": "dc2",
    "primary_datacenter": "dc1",
    "data_dir": "/var/lib/meshfed",
    "bind_addr": "127.0.1.1",
    "advertise_addr": "10.0.0.1",
    "client_addr": "0.0.0.0",
    "ports": {"http": 9500, "server": 9300, "raft": 9301},
    "server": True,
    "bootstrap_expect": 3,
    "retry_join": ["10.0.0.2", "10.0.0.3:7000"],
    "encrypt": KEY,
    "domain": "Mesh.Example.",
    "log_level": "DEBUG",
    "primary_gateways": ["gw1.dc1.example.com:8443", "192.0.2.1:443"],
    "primary_gateways_interval": "45s",
    "disable_primary_gateway_fallback": True,
    "connect": {"enabled": True, "enable_mesh_gateway_wan_federation": True},
    "tls": {
        "defaults": {
            "ca_file": "/tls/ca.pem",
            "cert_file": "/tls/server.pem",
            "key_file": "/tls/server-key.pem",
            "verify_incoming": True,
            "verify_outgoing": True,
        },
        "internal_rpc": {"verify_server_hostname": True},
    },
    "telemetry": {"prometheus_retention_time": "2m", "disable_hostname": False, "metrics_prefix": "meshfed"},
    "performance": {"raft_multiplier": 5},
    "federation_state_ttl": "48h",
    "federation_state_refresh_interval": "5m",
    "federation_state_anti_entropy_sync_interval": 2,
    "replication_rate": 2.5,
    "replication_burst": 10,
    "replication_apply_limit": 50,
    "raft_snapshot_threshold": 1000,
    "raft_snapshot_interval": "1m30s",
}

FULL_EXPECTED = Config(
    node_name="s1",
    datacenter="dc2",
    primary_datacenter="dc1",
    data_dir="/var/lib/meshfed",
    bind_addr="127.0.1.1",
    advertise_addr="10.0.0.1",
    client_addr="0.0.0.0",
    ports=Ports(http=9500, server=9300, raft=9301),
    server=True,
    bootstrap_expect=3,
    retry_join=("10.0.0.2:9301", "10.0.0.3:7000"),
    encrypt=KEY,
    domain="mesh.example",
    log_level="debug",
    primary_gateways=("gw1.dc1.example.com:8443", "192.0.2.1:443"),
    primary_gateways_interval=45.0,
    disable_primary_gateway_fallback=True,
    connect=ConnectConfig(enabled=True, enable_mesh_gateway_wan_federation=True),
    tls=TLSConfig("/tls/ca.pem", "/tls/server.pem", "/tls/server-key.pem", True, True, True),
    telemetry=TelemetryConfig(
        prometheus_retention_time=120.0, disable_hostname=False, metrics_prefix="meshfed"
    ),
    raft_multiplier=5,
    federation_state_ttl=48 * 3600.0,
    federation_state_refresh_interval=300.0,
    federation_state_anti_entropy_sync_interval=2.0,
    replication_rate=2.5,
    replication_burst=10,
    replication_apply_limit=50,
    raft_snapshot_threshold=1000,
    raft_snapshot_interval=90.0,
)


# --- reading files -----------------------------------------------------------------------------


def test_full_hcl_file(write: Callable[..., str]) -> None:
    assert load([write(FULL_HCL)]) == FULL_EXPECTED


def test_full_json_file(write: Callable[..., str]) -> None:
    assert load([write(json.dumps(FULL_JSON), ".json")]) == FULL_EXPECTED


def test_minimal_file_gets_every_default(write: Callable[..., str]) -> None:
    loaded = load([write(base_hcl())])
    assert loaded == Config(node_name="s1", data_dir="/var/lib/meshfed", encrypt=KEY)
    assert loaded.ports == Ports(8500, 8300, 8301)
    assert (loaded.datacenter, loaded.bind_addr, loaded.domain, loaded.log_level) == (
        "dc1",
        "127.0.0.1",
        "consul",
        "info",
    )
    assert loaded.federation_state_ttl == 72 * 3600
    assert loaded.telemetry == TelemetryConfig(60.0, True, "consul")
    assert not loaded.tls.enabled


def test_node_name_defaults_to_short_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module.socket, "gethostname", lambda: "box-7.rack.example.com")
    assert load([], {"data_dir": "/d", "encrypt": KEY}).node_name == "box-7"


def test_unusable_host_name_asks_for_node_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module.socket, "gethostname", lambda: "under_score")
    with pytest.raises(ConfigError) as info:
        load([], {"data_dir": "/d", "encrypt": KEY})
    assert (info.value.source, info.value.key) == (DEFAULTS, "node_name")
    assert "set node_name" in info.value.reason


def test_repeated_hcl_blocks_merge_with_later_winning(write: Callable[..., str]) -> None:
    text = base_hcl() + (
        "ports { http = 9000 }\nports { http = 9001 }\nports { raft = 9002 }\n"
        "connect { enabled = false }\nconnect { enabled = true }\n"
        'tls { defaults { ca_file = "a" } }\ntls { defaults { cert_file = "b" } }\n'
        'tls { defaults { cert_file = "c" } }\ntls { defaults { key_file = "k" } }\n'
    )
    loaded = load([write(text)])
    assert loaded.ports == Ports(http=9001, server=8300, raft=9002)
    assert loaded.connect.enabled is True
    assert (loaded.tls.ca_file, loaded.tls.cert_file) == ("a", "c")


def test_json_blocks_given_as_lists_are_normalised(write: Callable[..., str]) -> None:
    body = {**BASE, "connect": [{"enabled": True}], "ports": [{"http": 1}, {"http": 2}]}
    loaded = load([write(json.dumps(body), ".json")])
    assert loaded.connect.enabled is True
    assert loaded.ports.http == 2


def test_numbers_are_seconds_for_durations(write: Callable[..., str]) -> None:
    loaded = load([write(base_hcl() + "primary_gateways_interval = 12.5\nraft_snapshot_interval = 60\n")])
    assert (loaded.primary_gateways_interval, loaded.raft_snapshot_interval) == (12.5, 60.0)


# --- merging -----------------------------------------------------------------------------------


def test_later_files_win_and_lists_are_concatenated(write: Callable[..., str]) -> None:
    first = write(base_hcl() + 'datacenter = "dc1"\nretry_join = ["10.0.0.2"]\nports { http = 9500 }\n')
    second = write(
        json.dumps({"datacenter": "dc9", "retry_join": ["10.0.0.3"], "bootstrap_expect": 4}), ".json"
    )
    loaded = load([first, second], {"retry_join": ["10.0.0.4"], "ports": {"raft": 9301}})
    assert loaded.datacenter == "dc9"
    assert loaded.retry_join == ("10.0.0.2:9301", "10.0.0.3:9301", "10.0.0.4:9301")
    assert loaded.ports == Ports(http=9500, server=8300, raft=9301)


def test_overrides_beat_files_but_only_where_given(write: Callable[..., str]) -> None:
    path = write(base_hcl() + 'datacenter = "dc2"\nlog_level = "warn"\n')
    loaded = load([path], {"datacenter": "dc3"})
    assert (loaded.datacenter, loaded.log_level) == ("dc3", "warn")


def test_primary_gateways_concatenate_across_files(write: Callable[..., str]) -> None:
    wanfed = (
        'datacenter = "dc2"\nprimary_datacenter = "dc1"\nconnect { enabled = true\n'
        "enable_mesh_gateway_wan_federation = true }\n"
        'tls { defaults { cert_file = "c" key_file = "k" } }\n'
    )
    first = write(base_hcl() + wanfed + 'primary_gateways = ["gw1:443"]\n')
    second = write('primary_gateways = ["gw2:443"]\n')
    assert load([first, second]).primary_gateways == ("gw1:443", "gw2:443")


# --- per-key errors: file, dotted key, reason --------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "key", "reason"),
    [
        ('nodename = "x"', "nodename", "unknown key (did you mean node_name?)"),
        ("ports { htpp = 1 }", "ports.htpp", "unknown key (did you mean ports.http?)"),
        ('tls { defaults { bogus = "x" } }', "tls.defaults.bogus", "unknown key"),
        ('tls { https { ca_file = "x" } }', "tls.https", "unknown key"),
        ('"ports.http" = 9000', "ports.http", "unknown key"),
        ("dev = true", "dev", "unknown key"),
        ('ports { http = "x" }', "ports.http", "integer from 1 to 65535"),
        ("ports { http = 0 }", "ports.http", "integer from 1 to 65535"),
        ("ports { raft = 70000 }", "ports.raft", "integer from 1 to 65535"),
        ("ports { server = 1.5 }", "ports.server", "integer from 1 to 65535"),
        ("bootstrap_expect = true", "bootstrap_expect", "integer"),
        ("bootstrap_expect = 0", "bootstrap_expect", "integer from 1"),
        ('datacenter = "DC1"', "datacenter", "lower-case letters, digits, - and _"),
        ('datacenter = ""', "datacenter", "lower-case letters"),
        ('primary_datacenter = "dc 1"', "primary_datacenter", "lower-case letters"),
        ('node_name = "bad_name"', "node_name", "DNS label"),
        ('bind_addr = "1.2.3.4:80"', "bind_addr", "without a port"),
        ('advertise_addr = "not a host"', "advertise_addr", "without a port"),
        ('primary_gateways_interval = "10"', "primary_gateways_interval", 'such as "30s"'),
        ('primary_gateways_interval = "-5s"', "primary_gateways_interval", "greater than 0"),
        ('primary_gateways_interval = "0s"', "primary_gateways_interval", "greater than 0"),
        (
            'telemetry { prometheus_retention_time = "abc" }',
            "telemetry.prometheus_retention_time",
            "duration",
        ),
        ('primary_gateways = ["gw.example.com"]', "primary_gateways", "has no port"),
        ('primary_gateways = "gw:443"', "primary_gateways", 'list of "host:port"'),
        ('retry_join = "10.0.0.2"', "retry_join", "list of"),
        ('retry_join = ["10.0.0.2:99999"]', "retry_join", "1 to 65535"),
        ('retry_join = ["bad host"]', "retry_join", "neither an IP address nor a DNS name"),
        ('encrypt = "abc"', "encrypt", "not valid base64"),
        (f'encrypt = "{base64.b64encode(b"x" * 8).decode()}"', "encrypt", "decodes to 8 bytes"),
        ('log_level = "verbose"', "log_level", "one of trace, debug, info, warn, error"),
        ('connect = "yes"', "connect", "must be a block"),
        ("connect { enabled = 1 }", "connect.enabled", "true or false"),
        ("performance { raft_multiplier = 11 }", "performance.raft_multiplier", "from 1 to 10"),
        ("replication_rate = 0", "replication_rate", "greater than 0"),
        ('domain = "bad domain"', "domain", "DNS name"),
        ("server = false", "server", "server agents only"),
    ],
)
def test_bad_key_in_hcl_names_file_key_and_reason(
    write: Callable[..., str], snippet: str, key: str, reason: str
) -> None:
    path = write(base_hcl() + snippet + "\n")
    with pytest.raises(ConfigError) as info:
        load([path])
    error = info.value
    assert (error.source, error.key) == (path, key)
    assert reason in error.reason
    assert str(error) == f"{path}: {key}: {error.reason}"


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ({"ports": {"htpp": 1}}, "ports.htpp", "unknown key"),
        ({"ports": {"http": "8500"}}, "ports.http", "got '8500' (str)"),
        ({"tls": {"defaults": {"verify_incoming": "yes"}}}, "tls.defaults.verify_incoming", "true or false"),
        ({"tls": {"defaults": None}}, "tls.defaults", "must be a block"),
        ({"retry_join": [1, 2]}, "retry_join", "list of"),
        ({"node_name": None}, "node_name", "must be a string"),
    ],
)
def test_bad_key_in_json_names_file_key_and_reason(
    write: Callable[..., str], body: dict[str, Any], key: str, reason: str
) -> None:
    path = write(json.dumps({**BASE, **body}), ".json")
    with pytest.raises(ConfigError) as info:
        load([path])
    assert (info.value.source, info.value.key) == (path, key)
    assert reason in info.value.reason


def test_error_in_overrides_blames_the_command_line(write: Callable[..., str]) -> None:
    with pytest.raises(ConfigError) as info:
        load([write(base_hcl())], {"ports": {"http": -1}})
    assert (info.value.source, info.value.key) == (COMMAND_LINE, "ports.http")
    assert str(info.value).startswith("command line: ports.http: ")


def test_error_names_the_file_that_holds_the_bad_value(write: Callable[..., str]) -> None:
    good = write(base_hcl())
    bad = write('log_level = "loud"\n')
    with pytest.raises(ConfigError) as info:
        load([good, bad])
    assert info.value.source == bad


# --- file-level errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "extension", "reason"),
    [
        ("node_name: s1", ".yaml", "unsupported file extension; accepted: .hcl or .json"),
        ("node_name = ", ".hcl", "not valid HCL"),
        ("{", ".json", "not valid JSON"),
        ("[1, 2]", ".json", "top level must be an object"),
    ],
)
def test_unreadable_files_are_named(
    write: Callable[..., str], text: str, extension: str, reason: str
) -> None:
    path = write(text, extension)
    with pytest.raises(ConfigError) as info:
        load([path])
    assert (info.value.source, info.value.key) == (path, "")
    assert reason in info.value.reason
    assert str(info.value) == f"{path}: {info.value.reason}"


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.hcl")
    with pytest.raises(ConfigError) as info:
        load([path])
    assert info.value.source == path
    assert "cannot read" in info.value.reason


# --- rules across keys -------------------------------------------------------------------------


def load_error(files: list[str], overrides: dict[str, Any] | None = None, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(files, overrides, **kwargs)
    return info.value


def test_missing_encrypt_explains_why_and_how(write: Callable[..., str]) -> None:
    path = write('node_name = "s1"\ndata_dir = "/d"\n')
    error = load_error([path])
    assert str(error) == (
        f"{path}: encrypt: a cluster key is required because the Raft port speaks pickle;"
        " make one with `meshfed keygen`"
    )


def test_missing_encrypt_without_files_blames_command_line() -> None:
    error = load_error([], {"node_name": "s1", "data_dir": "/d"})
    assert (error.source, error.key) == (COMMAND_LINE, "encrypt")


def test_data_dir_is_required_outside_dev(write: Callable[..., str]) -> None:
    error = load_error([write(f'node_name = "s1"\nencrypt = "{KEY}"\n')])
    assert error.key == "data_dir"
    assert "required" in error.reason


def test_peer_count_must_match_bootstrap_expect(write: Callable[..., str]) -> None:
    expect_file = write(base_hcl() + "bootstrap_expect = 3\n")
    error = load_error([expect_file])
    assert (error.source, error.key) == (expect_file, "retry_join")
    assert "lists 0 other server(s) but bootstrap_expect = 3 needs exactly 2" in error.reason

    join_file = write('retry_join = ["10.0.0.2"]\n')
    error = load_error([expect_file, join_file])
    assert (error.source, error.key) == (join_file, "retry_join")


def test_peers_without_bootstrap_expect_join_a_running_datacenter(write: Callable[..., str]) -> None:
    config = load([write(base_hcl() + 'retry_join = ["10.0.0.2"]\n')])
    assert config.joins and config.retry_join == ("10.0.0.2:8301",)
    assert not load([write(base_hcl())]).joins


@pytest.mark.parametrize(
    ("snippet", "key", "reason"),
    [
        ('bind_addr = "0.0.0.0"', "advertise_addr", "required when bind_addr is 0.0.0.0"),
        ('bind_addr = "::"', "advertise_addr", "required when bind_addr is ::"),
        ('advertise_addr = "0.0.0.0"', "advertise_addr", "cannot be dialled"),
        ("ports {\n http = 8300\n}", "ports.server", "must differ"),
        ("ports {\n raft = 8500\n}", "ports.raft", "must differ"),
        ('tls { defaults { cert_file = "c" } }', "tls.defaults.key_file", "set together"),
        ('tls { defaults { key_file = "k" } }', "tls.defaults.cert_file", "set together"),
        ("tls { defaults { verify_incoming = true } }", "tls.defaults.verify_incoming", "requires"),
        ("tls { defaults { verify_outgoing = true } }", "tls.defaults.ca_file", "required when"),
        ("tls { internal_rpc { verify_server_hostname = true } }", "tls.defaults.ca_file", "required"),
        (
            "connect { enable_mesh_gateway_wan_federation = true }",
            "connect.enable_mesh_gateway_wan_federation",
            "requires connect.enabled = true",
        ),
        (
            "connect {\n enabled = true\n enable_mesh_gateway_wan_federation = true\n}",
            "connect.enable_mesh_gateway_wan_federation",
            "route by TLS SNI",
        ),
        ('primary_gateways = ["gw:443"]', "primary_gateways", "requires connect.enable_mesh_gateway"),
        (
            'federation_state_ttl = "10m"\nfederation_state_refresh_interval = "10m"',
            "federation_state_refresh_interval",
            "shorter than federation_state_ttl",
        ),
    ],
)
def test_rules_across_keys(write: Callable[..., str], snippet: str, key: str, reason: str) -> None:
    path = write(base_hcl() + snippet + "\n")
    error = load_error([path])
    assert (error.source, error.key) == (path, key)
    assert reason in error.reason


WANFED = (
    "connect {\n enabled = true\n enable_mesh_gateway_wan_federation = true\n}\n"
    'tls { defaults {\n cert_file = "c"\n key_file = "k"\n} }\n'
)


def test_primary_gateways_are_refused_in_the_primary(write: Callable[..., str]) -> None:
    for primary in ("", 'primary_datacenter = "dc1"\n'):
        path = write(base_hcl() + WANFED + primary + 'primary_gateways = ["gw:443"]\n')
        error = load_error([path])
        assert error.key == "primary_gateways"
        assert "'dc1' is the primary" in error.reason


def test_secondary_with_primary_gateways_loads(write: Callable[..., str]) -> None:
    path = write(
        base_hcl()
        + WANFED
        + 'datacenter = "dc2"\nprimary_datacenter = "dc1"\nprimary_gateways = ["gw:443"]\n'
    )
    loaded = load([path])
    assert (loaded.primary, loaded.is_primary, loaded.primary_gateways) == ("dc1", False, ("gw:443",))
    assert config_warnings(loaded) == []


def test_verify_server_hostname_implies_verify_outgoing(write: Callable[..., str]) -> None:
    path = write(
        base_hcl()
        + 'tls {\n defaults { ca_file = "ca" }\n internal_rpc { verify_server_hostname = true }\n}\n'
    )
    assert load([path]).tls.verify_outgoing is True


# --- retry_join normalisation ------------------------------------------------------------------


def test_retry_join_is_normalised_and_self_is_removed(write: Callable[..., str]) -> None:
    path = write(
        base_hcl()
        + 'bind_addr = "127.0.1.1"\nbootstrap_expect = 5\nports { raft = 7000 }\n'
        + 'retry_join = ["127.0.1.1", "127.0.1.2", "Peer.Example.com", "127.0.1.2:7000", "[::1]:9000", "::1"]\n'
    )
    assert load([path]).retry_join == ("127.0.1.2:7000", "peer.example.com:7000", "[::1]:9000", "[::1]:7000")


def test_retry_join_drops_the_advertised_self(write: Callable[..., str]) -> None:
    path = write(
        base_hcl()
        + 'advertise_addr = "10.0.0.1"\nbootstrap_expect = 2\nretry_join = ["10.0.0.1", "10.0.0.2"]\n'
    )
    assert load([path]).retry_join == ("10.0.0.2:8301",)


def test_normalise_retry_join_pure() -> None:
    assert normalise_retry_join(["a", "A:1", "a:8301", "b", "::0001", "[0::1]:8301"], 8301, ["b:8301"]) == (
        "a:8301",
        "a:1",
        "[::1]:8301",
    )
    with pytest.raises(ValueError, match="port"):
        normalise_retry_join(["a:x"], 8301)
    with pytest.raises(ValueError):
        normalise_retry_join(["[::1"], 8301)


_hosts = st.sampled_from(["10.0.0.1", "10.0.0.2", "node-a", "Node-B.example", "::1", "fe80::1"])
_entries = st.lists(
    st.tuples(_hosts, st.none() | st.integers(1, 65535)).map(
        lambda pair: (
            pair[0]
            if pair[1] is None
            else (f"[{pair[0]}]:{pair[1]}" if ":" in pair[0] else f"{pair[0]}:{pair[1]}")
        )
    ),
    max_size=8,
)


@given(_entries, st.integers(1, 65535), st.lists(st.sampled_from(["10.0.0.1:8301", "node-a:8301"])))
def test_normalised_peers_are_distinct_canonical_and_never_self(
    entries: list[str], port: int, own: list[str]
) -> None:
    peers = normalise_retry_join(entries, port, own)
    assert len(set(peers)) == len(peers)
    assert not set(peers) & set(own)
    assert normalise_retry_join(peers, port, own) == peers
    assert all(peer.rsplit(":", 1)[1].isdigit() for peer in peers)


# --- dev mode, keys and derived addresses ------------------------------------------------------


def test_dev_mode_needs_no_key_or_data_dir() -> None:
    first = load([], {"node_name": "dev1"}, dev=True)
    second = load([], {"node_name": "dev1"}, dev=True)
    assert first.dev and first.data_dir == "" and first.bootstrap_expect == 1
    assert len(validate_key(first.encrypt)) == 32
    assert first.encrypt != second.encrypt
    assert load([], {"node_name": "dev1", "encrypt": KEY}, dev=True).encrypt == KEY
    assert any("dev mode" in warning for warning in config_warnings(first))


def test_dev_mode_refuses_a_cluster() -> None:
    error = load_error([], {"node_name": "d", "bootstrap_expect": 3}, dev=True)
    assert (error.source, error.key) == (COMMAND_LINE, "bootstrap_expect")
    assert "single server" in error.reason


def test_generate_and_validate_keys() -> None:
    key = generate_key()
    assert len(base64.b64decode(key)) == 32
    assert generate_key() != key
    for size in (16, 24, 32):
        assert validate_key(base64.b64encode(b"k" * size).decode()) == b"k" * size
    for bad, reason in [
        ("", "empty"),
        ("!!!!", "base64"),
        (base64.b64encode(b"k" * 20).decode(), "20 bytes"),
    ]:
        with pytest.raises(ValueError, match=reason):
            validate_key(bad)


def test_derived_addresses() -> None:
    plain = Config(node_name="s1", bind_addr="127.0.1.1", ports=Ports(1, 2, 3))
    assert (plain.advertise, plain.raft_address, plain.rpc_address, plain.http_address) == (
        "127.0.1.1",
        "127.0.1.1:3",
        "127.0.1.1:2",
        "127.0.1.1:1",
    )
    assert (plain.primary, plain.is_primary) == ("dc1", True)
    routed = Config(node_name="s1", bind_addr="0.0.0.0", advertise_addr="::1", client_addr="127.0.0.2")
    assert (routed.raft_address, routed.rpc_address, routed.http_address) == (
        "[::1]:8301",
        "[::1]:8300",
        "127.0.0.2:8500",
    )
    assert TLSConfig(cert_file="c", key_file="k").enabled and not TLSConfig(cert_file="c").enabled


def test_warnings_for_suspicious_federation_settings(write: Callable[..., str]) -> None:
    primary = load([write(base_hcl() + WANFED + "disable_primary_gateway_fallback = true\n")])
    warnings = config_warnings(primary)
    assert any("primary_datacenter is not set" in warning for warning in warnings)
    assert any("disable_primary_gateway_fallback has no effect" in warning for warning in warnings)
    secondary = load([write(base_hcl() + WANFED + 'datacenter = "dc2"\nprimary_datacenter = "dc1"\n')])
    assert [w for w in config_warnings(secondary) if "primary_gateways is empty" in w]
    assert config_warnings(load([write(base_hcl())])) == []

"""``meshfed agent`` flags: Consul's single-dash style, and only the flags given become overrides."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import pytest

from meshfed.server.cli.flags import add_agent_arguments, agent_overrides, build_agent_parser
from meshfed.server.config import COMMAND_LINE, ConfigError, load

KEY = base64.b64encode(bytes(range(32))).decode()


def overrides_for(argv: list[str]) -> tuple[list[str], dict[str, object], bool]:
    return agent_overrides(build_agent_parser().parse_args(argv))


def test_the_documented_example(tmp_path: Path) -> None:
    argv = (
        f"-server -node s1 -datacenter dc1 -bind 127.0.1.1 -data-dir {tmp_path} -encrypt {KEY}"
        " -bootstrap-expect 3 -retry-join 127.0.1.2 -retry-join 127.0.1.3"
    ).split()
    files, overrides, dev = overrides_for(argv)
    assert (files, dev) == ([], False)
    assert overrides == {
        "server": True,
        "node_name": "s1",
        "datacenter": "dc1",
        "bind_addr": "127.0.1.1",
        "data_dir": str(tmp_path),
        "encrypt": KEY,
        "bootstrap_expect": 3,
        "retry_join": ["127.0.1.2", "127.0.1.3"],
    }
    loaded = load(files, overrides, dev=dev)
    assert loaded.retry_join == ("127.0.1.2:8301", "127.0.1.3:8301")
    assert loaded.raft_address == "127.0.1.1:8301"


def test_no_flags_means_no_overrides() -> None:
    assert overrides_for([]) == ([], {}, False)


def test_every_value_flag_maps_to_its_config_key() -> None:
    argv = [
        "-primary-datacenter", "dc1", "-advertise", "10.0.0.1", "-client", "0.0.0.0",
        "-http-port", "9500", "-server-port", "9300", "-raft-port", "9301", "-domain", "mesh",
        "-primary-gateway", "gw1:443", "-primary-gateway", "gw2:443", "-log-level", "debug",
    ]  # fmt: skip
    _, overrides, _ = overrides_for(argv)
    assert overrides == {
        "primary_datacenter": "dc1",
        "advertise_addr": "10.0.0.1",
        "client_addr": "0.0.0.0",
        "ports": {"http": 9500, "server": 9300, "raft": 9301},
        "domain": "mesh",
        "primary_gateways": ["gw1:443", "gw2:443"],
        "log_level": "debug",
    }


def test_double_dash_and_equals_forms_are_accepted() -> None:
    _, overrides, dev = overrides_for(["--node", "s2", "-datacenter=dc2", "--http-port=9000", "--dev"])
    assert overrides == {"node_name": "s2", "datacenter": "dc2", "ports": {"http": 9000}}
    assert dev is True


def test_dev_flag_alone_loads() -> None:
    files, overrides, dev = overrides_for(["-dev", "-node", "dev1"])
    loaded = load(files, overrides, dev=dev)
    assert loaded.dev and loaded.encrypt


@pytest.mark.parametrize(
    "argv",
    [["-bootstrap-expect", "three"], ["-http-port", "x"], ["-data", "/d"], ["-nodes", "a"], ["-node"]],
)
def test_malformed_flags_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_agent_parser().parse_args(argv)
    assert "usage: meshfed agent" in capsys.readouterr().err


def test_config_files_and_dirs_keep_command_line_order(tmp_path: Path) -> None:
    directory = tmp_path / "conf.d"
    directory.mkdir()
    for name in ("20-b.json", "10-a.hcl", "notes.txt", "30-c.HCL"):
        (directory / name).write_text("{}")
    (directory / "sub.hcl").mkdir()
    first, last = tmp_path / "first.hcl", tmp_path / "last.json"
    files, _, _ = overrides_for(
        ["-config-file", str(first), "-config-dir", str(directory), "--config-file", str(last)]
    )
    assert files == [
        str(first),
        str(directory / "10-a.hcl"),
        str(directory / "20-b.json"),
        str(directory / "30-c.HCL"),
        str(last),
    ]


def test_missing_config_dir_is_a_command_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        overrides_for(["-config-dir", str(tmp_path / "absent")])
    assert (info.value.source, info.value.key) == (COMMAND_LINE, "-config-dir")


def test_flags_override_files_but_defaults_do_not(tmp_path: Path) -> None:
    path = tmp_path / "agent.hcl"
    path.write_text(
        f'node_name = "from-file"\ndatacenter = "dc2"\ndata_dir = "/d"\nencrypt = "{KEY}"\n'
        'retry_join = ["10.0.0.2"]\nbootstrap_expect = 3\nports { http = 9999 }\n'
    )
    files, overrides, dev = overrides_for(
        ["-config-file", str(path), "-datacenter", "dc3", "-retry-join", "10.0.0.3"]
    )
    loaded = load(files, overrides, dev=dev)
    assert (loaded.node_name, loaded.datacenter, loaded.ports.http) == ("from-file", "dc3", 9999)
    assert loaded.retry_join == ("10.0.0.2:8301", "10.0.0.3:8301")


def test_bad_flag_value_is_reported_against_the_command_line() -> None:
    files, overrides, dev = overrides_for(["-dev", "-node", "n", "-datacenter", "DC1"])
    with pytest.raises(ConfigError) as info:
        load(files, overrides, dev=dev)
    assert str(info.value).startswith("command line: datacenter: ")


def test_flags_can_be_added_to_a_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="meshfed")
    commands = parser.add_subparsers(dest="command")
    add_agent_arguments(commands.add_parser("agent"))
    ns = parser.parse_args(["agent", "-server", "-node", "s9"])
    assert ns.command == "agent"
    assert agent_overrides(ns) == ([], {"server": True, "node_name": "s9"}, False)


def test_encrypt_file_reads_a_private_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")  # as `meshfed keygen > key` leaves it
    key_file.chmod(0o600)
    _, overrides, _ = overrides_for(["-encrypt-file", str(key_file)])
    assert overrides == {"encrypt": KEY}


@pytest.mark.parametrize(
    "content, mode, reason",
    [
        (KEY, 0o644, "open to group or others (mode 0644); accepted: chmod 600"),
        (KEY, 0o640, "mode 0640"),
        ("\n", 0o600, "the key file is empty"),
        ("clé", 0o600, "not ASCII text"),
        (None, 0o600, "cannot read the key file"),
    ],
)
def test_unusable_encrypt_file_names_the_file(tmp_path: Path, content: str | None, mode: int, reason: str) -> None:
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_text(content)
        key_file.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        overrides_for(["-encrypt-file", str(key_file)])
    assert (caught.value.source, caught.value.key) == (str(key_file), "encrypt")
    assert reason in caught.value.reason


def test_a_bad_key_from_a_file_is_refused_at_load(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("abc")
    key_file.chmod(0o600)
    files, overrides, dev = overrides_for(["-encrypt-file", str(key_file), "-data-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="not valid base64"):
        load(files, overrides, dev=dev)


def test_encrypt_and_encrypt_file_together_are_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    with pytest.raises(ConfigError, match="both given"):
        overrides_for(["-encrypt", KEY, "-encrypt-file", str(key_file)])

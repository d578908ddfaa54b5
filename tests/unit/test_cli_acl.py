"""`meshfed acl` flag handling that needs no server: token precedence, rules and identities."""

from __future__ import annotations

import argparse
import io

import pytest

from meshfed.server.cli.acl import (
    ACLCommandError,
    apply_token_file,
    format_token,
    node_identity,
    read_rules,
    service_identity,
)


def test_token_flag_beats_token_file_which_is_read_when_no_flag(tmp_path) -> None:
    """Consul's precedence: -token, then -token-file, then CONSUL_HTTP_TOKEN (the HTTP client)."""
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    flagged = argparse.Namespace(token="from-flag", token_file=str(secret))
    apply_token_file(flagged)
    assert flagged.token == "from-flag"
    unflagged = argparse.Namespace(token=None, token_file=str(secret))
    apply_token_file(unflagged)
    assert unflagged.token == "from-file"
    with pytest.raises(ACLCommandError, match="cannot read -token-file"):
        apply_token_file(argparse.Namespace(token=None, token_file=str(tmp_path / "missing")))


def test_rules_from_file_stdin_or_text(tmp_path, monkeypatch) -> None:
    rules = tmp_path / "r.hcl"
    rules.write_text('acl = "read"')
    assert read_rules(f"@{rules}") == 'acl = "read"'
    monkeypatch.setattr("sys.stdin", io.StringIO('operator = "read"'))
    assert read_rules("-") == 'operator = "read"'
    assert read_rules('keyring = "read"') == 'keyring = "read"'


def test_identity_flags() -> None:
    assert service_identity("web") == {"ServiceName": "web"}
    assert service_identity("web:dc1,dc2") == {"ServiceName": "web", "Datacenters": ["dc1", "dc2"]}
    assert node_identity("n1:dc1") == {"NodeName": "n1", "Datacenter": "dc1"}
    with pytest.raises(ACLCommandError):
        node_identity("n1")


def test_token_output_reads_like_consuls() -> None:
    shown = format_token({
        "AccessorID": "a", "SecretID": "s", "Description": "Bootstrap Token (Global Management)", "Local": False,
        "CreateTime": "2026-01-01T00:00:00Z",
        "Policies": [{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}],
    })
    assert shown.splitlines() == [
        "AccessorID:       a",
        "SecretID:         s",
        "Description:      Bootstrap Token (Global Management)",
        "Local:            false",
        "Create Time:      2026-01-01T00:00:00Z",
        "Policies:",
        "   00000000-0000-0000-0000-000000000001 - global-management",
    ]

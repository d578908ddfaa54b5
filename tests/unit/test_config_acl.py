"""The `acl { ... }` block (reference/acl.md §1): defaults, accepted values, refusals, and tokens
that never show up in a repr, an error or a warning."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from meshfed.server.config import ACLConfig, ConfigError, config_warnings, load

KEY = base64.b64encode(bytes(range(32))).decode()
SECRET = "6f1c8a53-3f0e-4d6c-9a57-2f1b7c9e0d11"


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], str]:
    def write_file(text: str) -> str:
        path = tmp_path / "config.hcl"
        path.write_text(f'node_name = "s1"\ndata_dir = "/d"\nencrypt = "{KEY}"\n' + text, encoding="utf-8")
        return str(path)

    return write_file


def test_acls_are_off_by_default_with_consul_defaults(write: Callable[[str], str]) -> None:
    config = load([write("")])
    assert config.acl == ACLConfig()
    assert (config.acl.enabled, config.acl.default_policy, config.acl.down_policy) == (False, "allow", "extend-cache")
    assert (config.acl.token_ttl, config.acl.policy_ttl, config.acl.role_ttl) == (30.0, 30.0, 30.0)


def test_full_acl_block(write: Callable[[str], str]) -> None:
    config = load([write(f"""
acl {{
  enabled = true
  default_policy = "deny"
  down_policy = "async-cache"
  enable_token_persistence = true
  enable_token_replication = true
  token_ttl = "1m"
  policy_ttl = "2m"
  role_ttl = "3m"
  tokens {{
    initial_management = "{SECRET}"
    replication = "r"
    agent = "a"
    default = "d"
  }}
}}
""")])
    acl = config.acl
    assert (acl.enabled, acl.default_policy, acl.down_policy) == (True, "deny", "async-cache")
    assert (acl.enable_token_persistence, acl.enable_token_replication) == (True, True)
    assert (acl.token_ttl, acl.policy_ttl, acl.role_ttl) == (60.0, 120.0, 180.0)
    tokens = acl.tokens
    assert (tokens.initial_management, tokens.replication, tokens.agent, tokens.default) == (SECRET, "r", "a", "d")


def test_tokens_never_appear_in_the_repr(write: Callable[[str], str]) -> None:
    config = load([write(f'acl {{ enabled = true\n tokens {{ initial_management = "{SECRET}" agent = "agent-secret" }} }}')])
    assert SECRET not in repr(config)
    assert "agent-secret" not in repr(config)


@pytest.mark.parametrize(("text", "key"), [
    ('acl { default_policy = "maybe" }', "acl.default_policy"),
    ('acl { down_policy = "cache" }', "acl.down_policy"),
    ('acl { enabled = "yes" }', "acl.enabled"),
    ('acl { token_ttl = "soon" }', "acl.token_ttl"),
    ('acl { tokens { bogus = "x" } }', "acl.tokens.bogus"),
])
def test_bad_acl_values_are_refused_naming_the_key(write: Callable[[str], str], text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load([write(text)])
    assert caught.value.key == key


def test_a_token_of_the_wrong_type_is_refused_without_echoing_it(write: Callable[[str], str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load([write("acl { tokens { agent = 123456789 } }")])
    assert caught.value.key == "acl.tokens.agent"
    assert "123456789" not in str(caught.value)


def test_warnings_name_keys_never_token_values(write: Callable[[str], str]) -> None:
    off = load([write(f'acl {{ tokens {{ default = "{SECRET}" }} }}')])
    assert any("acl.enabled is false" in warning for warning in config_warnings(off))
    secondary = load([write(f'datacenter = "dc2"\nprimary_datacenter = "dc1"\n'
                            f'acl {{ enabled = true\n tokens {{ initial_management = "{SECRET}" }} }}')])
    warnings = config_warnings(secondary)
    assert any("initial_management" in warning for warning in warnings)
    assert any("acl.tokens.replication is empty" in warning for warning in warnings)
    assert all(SECRET not in warning for warning in warnings + config_warnings(off))


def test_a_primary_with_acls_on_and_no_tokens_has_no_warning(write: Callable[[str], str]) -> None:
    assert config_warnings(load([write('acl { enabled = true\n default_policy = "deny" }')])) == []


def test_token_lifetime_bounds(write: Callable[[str], str]) -> None:
    """acl.token_min/max_expiration_ttl (reference §2.1): Consul's 1m and 24h by default, settable,
    and a minimum longer than the maximum is refused naming the key."""
    assert (load([write("")]).acl.token_min_expiration_ttl, load([write("")]).acl.token_max_expiration_ttl) == (
        60.0, 86400.0)
    config = load([write('acl {\n  token_min_expiration_ttl = "1s"\n  token_max_expiration_ttl = "2h"\n}\n')])
    assert (config.acl.token_min_expiration_ttl, config.acl.token_max_expiration_ttl) == (1.0, 7200.0)
    with pytest.raises(ConfigError) as caught:
        load([write('acl {\n  token_min_expiration_ttl = "3h"\n  token_max_expiration_ttl = "2h"\n}\n')])
    assert "acl.token_min_expiration_ttl" in str(caught.value) and "token_max_expiration_ttl" in str(caught.value)
    with pytest.raises(ConfigError, match="acl.token_max_expiration_ttl"):
        load([write('acl {\n  token_max_expiration_ttl = "0s"\n}\n')])

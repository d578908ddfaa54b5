"""Effective mesh-gateway mode of an upstream, level by level (reference/connect-data.md §B.6)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.fsm.config_entries import ConfigEntryError
from meshfed.fsm.gateway_mode import LEVELS, MODES, SOURCE_DEFAULT, resolve_mesh_gateway_mode


def proxy_defaults(mode: str) -> dict[str, Any]:
    return {"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": mode}}


def service_defaults(
    top: str = "", defaults: str = "", override: str = "", override_name: str = "api", **extra: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {"Kind": "service-defaults", "Name": "web", "MeshGateway": {"Mode": top}}
    entry["UpstreamConfig"] = {
        "Defaults": {"MeshGateway": {"Mode": defaults}},
        "Overrides": [{"Name": override_name, "MeshGateway": {"Mode": override}, **extra}],
    }
    return entry


def resolve(levels: dict[str, str], upstream: str = "api") -> tuple[str, str]:
    """Build the inputs that set exactly the given levels, then resolve."""
    return resolve_mesh_gateway_mode(
        proxy_defaults(levels.get("proxy-defaults", "")),
        service_defaults(
            top=levels.get("service-defaults", ""),
            defaults=levels.get("service-defaults-upstream-defaults", ""),
            override=levels.get("service-defaults-upstream-override", ""),
        ),
        upstream,
        instance_mode=levels.get("service-instance", ""),
        upstream_mode=levels.get("upstream", ""),
    )


@pytest.mark.parametrize(("levels", "expected"), [
    ({}, ("", "default")),
    ({"proxy-defaults": "remote"}, ("remote", "proxy-defaults")),
    ({"proxy-defaults": "remote", "service-defaults": "local"}, ("local", "service-defaults")),
    ({"service-defaults": "local", "service-defaults-upstream-defaults": "none"},
     ("none", "service-defaults-upstream-defaults")),
    ({"service-defaults-upstream-defaults": "none", "service-instance": "remote"}, ("remote", "service-instance")),
    ({"service-instance": "remote", "service-defaults-upstream-override": "local"},
     ("local", "service-defaults-upstream-override")),
    ({"service-defaults-upstream-override": "local", "upstream": "none"}, ("none", "upstream")),
    ({"proxy-defaults": "local", "service-defaults": "remote", "service-defaults-upstream-defaults": "none",
      "service-instance": "local", "service-defaults-upstream-override": "remote", "upstream": "local"},
     ("local", "upstream")),
])
def test_mode_resolution_table(levels: dict[str, str], expected: tuple[str, str]) -> None:
    assert resolve(levels) == expected


def test_missing_entries_defer_to_the_default() -> None:
    assert resolve_mesh_gateway_mode(None, None, "api") == ("", "default")
    assert resolve_mesh_gateway_mode(None, {"Kind": "service-defaults", "Name": "web"}, "api") == ("", "default")
    assert resolve_mesh_gateway_mode(proxy_defaults("local"), None, "api") == ("local", "proxy-defaults")


def test_an_override_for_another_upstream_does_not_apply() -> None:
    entry = service_defaults(top="remote", override="local", override_name="cache")
    assert resolve_mesh_gateway_mode(None, entry, "api") == ("remote", "service-defaults")
    assert resolve_mesh_gateway_mode(None, entry, "cache") == ("local", "service-defaults-upstream-override")


def test_an_override_for_a_peer_service_does_not_apply_to_the_local_upstream() -> None:
    entry = service_defaults(defaults="none", override="local", Peer="cluster-02")
    assert resolve_mesh_gateway_mode(None, entry, "api") == ("none", "service-defaults-upstream-defaults")


@pytest.mark.parametrize(("keyword", "field"), [("instance_mode", "instance_mode"), ("upstream_mode", "upstream_mode")])
def test_request_modes_are_validated(keyword: str, field: str) -> None:
    with pytest.raises(ConfigEntryError) as caught:
        resolve_mesh_gateway_mode(None, None, "api", **{keyword: "nearest"})
    assert (caught.value.field, caught.value.message) == (field, 'Invalid Mesh Gateway Mode: "nearest"')


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({level: st.sampled_from(MODES) for level in LEVELS}))
def test_the_highest_non_empty_level_always_wins(levels: dict[str, str]) -> None:
    winners = [level for level in LEVELS if levels[level]]
    expected = (levels[winners[0]], winners[0]) if winners else ("", SOURCE_DEFAULT)
    assert resolve(levels) == expected

"""The reload plan (what changes live, what waits for a restart) and the log hub behind monitor."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from meshfed.server.config import Config, ConfigError
from meshfed.server.log_stream import HIDDEN, LogHub, level_number, redact
from meshfed.server.reload import Reloader, plan


def test_plan_applies_the_log_level_and_names_the_rest() -> None:
    old = Config(node_name="s1")
    new = dataclasses.replace(old, log_level="debug", replication_rate=9.0,
                              acl=dataclasses.replace(old.acl, token_ttl=1.0), unused_keys=("ui_config",))
    outcome = plan(old, new)
    assert outcome.applied == ("log_level",)
    assert outcome.needs_restart == ("acl.token_ttl", "replication_rate")  # field order; unused_keys not a change


def test_reload_of_an_invalid_file_applies_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "a.json"
    path.write_text('{"log_level": "info"}')
    levels: list[str] = []
    from meshfed.server.config import load

    running = load([str(path)], {"node_name": "s1"}, dev=True)
    reloader = Reloader([str(path)], {"node_name": "s1"}, True, running, levels.append)
    path.write_text('{"log_level": "debug", "bogus": 1}')
    with pytest.raises(ConfigError):
        reloader.reload()
    assert levels == [] and reloader.running.log_level == "info"
    path.write_text('{"log_level": "debug"}')
    assert reloader.reload().applied == ("log_level",)
    assert levels == ["debug"] and reloader.running.log_level == "debug"
    assert reloader.reload().applied == ()  # the dev cluster key, new each load, is not a change


def test_redact_hides_long_secrets_only() -> None:
    assert redact("token=abcdef0123456789 x", ["abcdef0123456789", "", "ab"]) == f"token={HIDDEN} x"
    with pytest.raises(ValueError, match="accepted: trace"):
        level_number("loud")


def test_hub_streams_by_level_and_restores_the_root_level() -> None:
    root = logging.getLogger()
    saved = root.level
    console = logging.NullHandler()
    hub = LogHub(console, logging.INFO, lambda: ["s3cr3t-s3cr3t"])
    root.addHandler(hub)
    log = logging.getLogger("meshfed.test.hub")

    async def run() -> tuple[str, str]:
        with hub.subscribe(logging.DEBUG) as debug, hub.subscribe(logging.WARNING) as warn:
            assert root.level == logging.DEBUG and console.level == logging.INFO
            log.debug("detail s3cr3t-s3cr3t")
            log.warning("careful")
            first = await asyncio.wait_for(debug.next_line(), 2)
            only = await asyncio.wait_for(warn.next_line(), 2)
        assert root.level == logging.INFO  # no debug subscriber left
        return first, only

    try:
        first, only = asyncio.run(run())
    finally:
        root.removeHandler(hub)
        root.setLevel(saved)
    assert first.endswith(f"detail {HIDDEN}") and "[DEBUG]" in first
    assert only.endswith("careful")

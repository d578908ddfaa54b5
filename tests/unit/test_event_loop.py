"""Which loop the processes run on: uvloop unless `MESHFED_EVENT_LOOP=asyncio`; a wrong value is
an error naming the variable, through the CLI as one line and exit 1."""

from __future__ import annotations

import asyncio

import pytest

from meshfed.server import event_loop
from meshfed.server.cli.main import main
from meshfed.server.event_loop import EVENT_LOOP_ENV, EventLoopChoiceError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_uvloop_by_default_and_asyncio_when_asked() -> None:
    assert event_loop.chosen({}) == "uvloop"
    assert event_loop.chosen({EVENT_LOOP_ENV: "asyncio"}) == "asyncio"
    assert event_loop.chosen({EVENT_LOOP_ENV: " UVLOOP "}) == "uvloop"
    assert event_loop.run(_loop_module(), "uvloop") == "uvloop"
    assert event_loop.run(_loop_module(), "asyncio") == "asyncio"


def test_an_unknown_loop_is_an_error_naming_the_variable() -> None:
    with pytest.raises(EventLoopChoiceError, match=f"{EVENT_LOOP_ENV}: expected one of uvloop, asyncio, got 'tokio'"):
        event_loop.chosen({EVENT_LOOP_ENV: "tokio"})


def test_the_cli_reports_a_wrong_choice_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "tokio")
    assert main(["agent", "-dev", "-data-dir", "/nonexistent"]) == 1
    assert capsys.readouterr().err == f"error: {EVENT_LOOP_ENV}: expected one of uvloop, asyncio, got 'tokio'\n"

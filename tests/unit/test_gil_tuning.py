"""The GIL switch interval of a server process (server/gil_tuning.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from meshfed.server import gil_tuning


@pytest.fixture(autouse=True)
def restore_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_a_server_hands_the_gil_over_every_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gil_tuning.ENV_VAR, raising=False)
    assert gil_tuning.tune() == pytest.approx(0.001)
    assert sys.getswitchinterval() == pytest.approx(0.001)


def test_the_environment_sets_another_interval_for_a_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gil_tuning.ENV_VAR, "0.005")
    assert gil_tuning.tune() == pytest.approx(0.005)


@pytest.mark.parametrize("value", ["fast", "0", "-1", "5"])
def test_a_bad_value_is_named_in_a_warning_and_the_default_kept(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv(gil_tuning.ENV_VAR, value)
    assert gil_tuning.tune() == pytest.approx(gil_tuning.SWITCH_INTERVAL)
    assert f"MESHFED_GIL_SWITCH_INTERVAL={value!r} is not a number of seconds" in caplog.text

"""A stop signal that lands while a child is spawned must not leave that child unnamed.

`meshfed demo` stops by raising from its signal handler; raised between the fork and the
assignment of `process`, nothing knew the child, so nothing stopped it."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest

from meshfed.server.cli import launcher


class Stopped(BaseException):
    pass


class Sleeper(launcher.ChildProcess):
    def __init__(self, log_path: str) -> None:
        self.process = None
        self.log_path = log_path

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(30)"]


def test_a_signal_during_the_spawn_is_delivered_after_the_child_is_named(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real_popen = subprocess.Popen

    def popen_then_signal(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = real_popen(*args, **kwargs)
        signal.raise_signal(signal.SIGHUP)  # after the fork, before `process` is assigned
        return child

    def stop(signum: int, _: Any) -> None:
        raise Stopped(signal.Signals(signum).name)

    monkeypatch.setattr(launcher.subprocess, "Popen", popen_then_signal)
    previous = signal.signal(signal.SIGHUP, stop)
    sleeper = Sleeper(str(tmp_path / "sleeper.log"))
    try:
        with pytest.raises(Stopped):
            sleeper.start()
        assert sleeper.process is not None and sleeper.alive()  # named, so it can be stopped
        assert signal.getsignal(signal.SIGHUP) is stop  # the handler is back
    finally:
        signal.signal(signal.SIGHUP, previous)
        sleeper.kill()
    assert not sleeper.alive()

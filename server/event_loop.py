"""The event loop a meshfed server runs on: uvloop where it is installed, else asyncio's own.

Why (issue #13, goals 2 and 4): profiles of the write path and of 10,000 woken blocking queries
put much of each answer in the loop itself (a task step, a callback scheduled from the Raft thread,
a transport write) and in aiohttp's request path on top of it. uvloop runs the same asyncio API on
libuv, and its transports and scheduling are compiled; the figures it bought are in
docs/benchmarks.md, each against the same run's asyncio loop.

Only `meshfed agent` runs on it. The Connect proxy upgrades accepted connections with
`StreamWriter.start_tls`, whose server-side handshake never completed on uvloop 0.23 here (every
try timed out), so proxies, gateways and the echo service stay on asyncio's loop, where nothing
was measured to gain anyway.

`MESHFED_EVENT_LOOP=asyncio` picks the standard loop (benchmarks compare the two in one run; an
operator can fall back if a platform misbehaves). Any other value than `asyncio` or `uvloop` is a
start-up error naming the variable, not a silent default.

What code under this must not assume: `loop.time()` on uvloop has millisecond resolution, so
compare loop times only with loop times (deadlines in server/raft use their own clock).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EVENT_LOOP_ENV = "MESHFED_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


class EventLoopChoiceError(ValueError):
    pass


def chosen(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """`uvloop` or `asyncio`: what the environment asks for, `uvloop` if it asks for nothing and
    uvloop can be imported."""
    wanted = environ.get(EVENT_LOOP_ENV, "").strip().lower()
    if wanted and wanted not in CHOICES:
        raise EventLoopChoiceError(f"{EVENT_LOOP_ENV}: expected one of {', '.join(CHOICES)}, got {wanted!r}")
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise EventLoopChoiceError(f"{EVENT_LOOP_ENV}=uvloop, but uvloop is not installed") from None
        return "asyncio"
    return "uvloop"


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None  # asyncio.Runner's default


def run(main: Coroutine[Any, Any, T], name: str | None = None) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    try:
        factory = loop_factory(name or chosen())
    except EventLoopChoiceError:
        main.close()  # never started: no "coroutine was never awaited" on top of the error
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)

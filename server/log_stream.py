"""The server's log, fanned out live to `GET /v1/agent/monitor` clients, and its level changed live.

One handler on the root logger formats each record once and hands the line to every subscriber
whose level admits it. Records come from any thread (PySyncObj logs from its own), so lines are
passed to the event loop with `call_soon_threadsafe`; a subscriber's queue is bounded and a slow
reader loses lines (counted, and reported to it) rather than growing the server's memory.

The root logger's level is the lowest level anyone wants (the console or a `-log-level debug`
monitor), while the console handler keeps the configured level: a debug monitor does not make the
server's own log noisy. Known secrets (ACL tokens from the config, the cluster key) are replaced
before a line leaves the process, as a second guard behind the rule that tokens are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR}
LOG_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
QUEUE_LINES = 1000
HIDDEN = "<hidden>"


def level_number(name: str) -> int:
    """`info` -> logging.INFO. Raises ValueError naming the accepted names."""
    try:
        return LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}; accepted: trace, debug, info, warn, error") from None


def redact(line: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 8:  # a short value would blank common words, and is no real secret
            line = line.replace(secret, HIDDEN)
    return line


class Subscription:
    """One monitor client: lines at or above `level`, in order, until it unsubscribes."""

    def __init__(self, level: int, loop: asyncio.AbstractEventLoop) -> None:
        self.level = level
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_LINES)
        self.dropped = 0

    def offer(self, line: str) -> None:
        """On the event loop: queue the line, or count it lost when the reader is behind."""
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.dropped += 1

    async def next_line(self) -> str:
        line = await self.queue.get()
        if self.dropped:
            lost, self.dropped = self.dropped, 0
            return f"[monitor: {lost} lines dropped, the reader was too slow]\n{line}"
        return line


class LogHub(logging.Handler):
    def __init__(self, console: logging.Handler, console_level: int,
                 secrets: Callable[[], Iterable[str]] = tuple) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.console = console
        self.console_level = console_level
        self.secrets = secrets
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()
        self._apply_levels()

    def _apply_levels(self) -> None:
        self.console.setLevel(self.console_level)
        wanted = [self.console_level, *(s.level for s in self._subscribers)]
        logging.getLogger().setLevel(min(wanted))

    def set_console_level(self, level: int) -> None:
        """What `reload` changes: the level of the server's own log."""
        with self._lock:
            self.console_level = level
            self._apply_levels()

    @contextmanager
    def subscribe(self, level: int) -> Iterator[Subscription]:
        subscription = Subscription(level, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.append(subscription)
            self._apply_levels()
        try:
            yield subscription
        finally:
            with self._lock:
                self._subscribers.remove(subscription)
                self._apply_levels()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            targets = [s for s in self._subscribers if record.levelno >= s.level]
        if not targets:
            return
        try:
            line = redact(self.format(record), self.secrets())
        except Exception:  # a bad log call must not break the caller; logging's own rule
            self.handleError(record)
            return
        for subscription in targets:
            try:
                subscription.loop.call_soon_threadsafe(subscription.offer, line)
            except RuntimeError:  # the loop closed under us: the server is stopping
                pass


def install(level_name: str, secrets: Callable[[], Iterable[str]] = tuple) -> LogHub:
    """Root logging for `meshfed agent`: a console handler on stderr at the configured level, and
    the hub. Replaces what `logging.basicConfig` did before."""
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    hub = LogHub(console, level_number(level_name), secrets)
    root = logging.getLogger()
    root.addHandler(console)
    root.addHandler(hub)
    return hub

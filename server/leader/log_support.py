"""Can every server of this datacenter apply a log command? (Mixed versions during an upgrade.)

A new version may add a log command. A server of an older version that meets it rejects the
entry, and its copy of the state silently misses what the entry wrote. Consul gates such features
on the versions its servers advertise; here the leader asks each member which command tags it
can apply (`Status/LogCommands`) before it proposes a newer command, and uses the older way when
any member does not answer yes: an old server knows no such method, a down one cannot say, and
either may apply the log later. Answers are kept for `CACHE_SECONDS` per membership, so a resync
asks once, not once per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
ASK_TIMEOUT = 2.0

# (rpc address, method, header, body, timeout) -> (meta, answer)
Call = Callable[[str, str, RequestHeader, Any, float], Awaitable[tuple[QueryMeta, Any]]]


def lacking(answers: dict[str, Any], tag: str) -> list[str]:
    """The members whose answer does not list `tag` (an error is no answer): empty when all do."""
    return sorted(address for address, tags in answers.items() if not (isinstance(tags, list) and tag in tags))


class LogCommandSupport:
    def __init__(self, *, members: Callable[[], Sequence[str]], call: Call,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._members = members  # the other servers' RPC addresses in this datacenter
        self._call = call
        self._clock = clock
        self._last: tuple[tuple[str, tuple[str, ...]], float, bool] | None = None  # (key, when, answer)

    async def all_support(self, tag: str) -> bool:
        members = tuple(sorted(self._members()))
        key = (tag, members)
        now = self._clock()
        if self._last is not None and self._last[0] == key and now - self._last[1] < CACHE_SECONDS:
            return self._last[2]
        answers: dict[str, Any] = {}
        for address in members:
            try:
                _, answers[address] = await self._call(address, "Status/LogCommands", RequestHeader(), {}, ASK_TIMEOUT)
            except (RPCError, OSError, TimeoutError) as exc:
                answers[address] = exc
        missing = lacking(answers, tag)
        if missing:
            log.warning("log command %s not used: server(s) %s cannot apply it (older version, or not "
                        "reachable); using the older command until every server can", tag, ", ".join(missing))
        self._last = (key, now, not missing)
        return not missing

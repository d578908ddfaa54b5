"""One upstream call for identical blocking queries forwarded to the leader (issue #13, goal 2).

With default consistency a follower forwards every blocking read to the leader. Ten thousand
clients parked on `/v1/catalog/services?index=N` behind one follower used to cost ten thousand
gRPC streams from that follower to the leader, ten thousand parked queries on the leader and ten
thousand re-runs and answers when the index moved; under that load thousands of the streams were
cancelled. Identical queries get identical answers, so they can share one call: the first caller
starts it, later identical callers await the same result, and the call is cancelled only when the
last of them gives up (client gone, leader moved).

"Identical" is decided on the encoded request (method, header, body), so everything the leader
sees - the token (ACLs), min index, wait, consistency, filter, datacenter - is part of the key and
two callers that could get different answers never share. Only blocking reads are shared: a write
must run once per caller (request ids), and a non-blocking read is short and cheap already.
Consul does not do this; it is safe because a blocking query's answer depends only on its request
and the leader's state at answer time, which every sharer accepts by waiting at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from meshfed.rpc.header import RequestHeader

T = TypeVar("T")


def coalesce_key(address: str, method: str, header: RequestHeader, encoded: bytes, *, write: bool) -> Hashable | None:
    """The sharing key of a forwarded call, or None when the call must run on its own.

    `encoded` is the request exactly as it goes on the wire (header and body), so equal keys mean
    byte-identical requests to the same leader."""
    if write or not header.blocking or header.request_id:
        return None
    return (address, method, encoded)


@dataclass
class _Shared(Generic[T]):
    task: asyncio.Future[T]
    # One future per caller, settled from the task's one done-callback. Not asyncio.shield: each
    # shield hangs a callback on the shared task, and a caller leaving removes its callback, a scan
    # of all the others; ten thousand callers leaving at once (a client process gone) is n².
    waiters: set[asyncio.Future[T]] = field(default_factory=set)

    def settle(self, task: asyncio.Future[T]) -> None:
        for waiter in self.waiters:
            if waiter.done():
                continue
            if task.cancelled():
                waiter.cancel()
            elif (error := task.exception()) is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(task.result())


class Coalescer(Generic[T]):
    """Shares one in-flight call among callers with the same key; counts calls started and joined
    so a metric (and a test) can see the sharing."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, _Shared[T]] = {}
        self.started = 0
        self.joined = 0

    def in_flight(self) -> int:
        return len(self._inflight)

    async def run(self, key: Hashable | None, start: Callable[[], Awaitable[T]]) -> T:
        """Await `start()`'s result, sharing it with concurrent callers of the same key.

        A caller that is cancelled leaves the shared call running for the others; the last one
        to leave cancels it. Every caller gets the same result or the same exception."""
        if key is None:
            return await start()
        shared = self._inflight.get(key)
        if shared is None or shared.task.done():
            # A done task is an answer already handed out: a newcomer asks again (its index may
            # be stale by now) rather than taking an answer it did not wait for.
            shared = _Shared(asyncio.ensure_future(start()))
            self._inflight[key] = shared
            shared.task.add_done_callback(lambda task: (self._forget(key, shared), shared.settle(task)))
            self.started += 1
        else:
            self.joined += 1
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        shared.waiters.add(waiter)
        try:
            return await waiter
        finally:
            shared.waiters.discard(waiter)
            if not shared.waiters and not shared.task.done():
                self._forget(key, shared)
                shared.task.cancel()

    def _forget(self, key: Hashable, shared: _Shared[T]) -> None:
        if self._inflight.get(key) is shared:
            del self._inflight[key]

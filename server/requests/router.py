"""Where an RPC is served: here, on the local leader, or in another datacenter (DESIGN §6).

Order, as Consul's ForwardRPC: (1) a target datacenter other than ours goes cross-DC through
`remote` (the gateway dialer, set when WAN federation is on); (2) writes, and reads that are
neither stale nor served by the leader, go to the local leader; (3) with no leader known we
retry with jitter for up to RPC_HOLD_TIMEOUT, then fail with "No cluster leader". A local write
that fails because leadership moved is retried the same way, with the same request id, so it is
applied at most once.

A forwarded call is watched while it is in flight. If this server's view of the leader moves away
from the server the call went to (a new leader is elected, or Raft drops the leader because it went
silent), the call is abandoned and re-routed within the same hold window: a leader that was cut
off keeps its sockets open, so waiting for its answer would take the whole forwarding deadline
(NON_BLOCKING_RPC_TIMEOUT + RPC_HOLD_TIMEOUT, 17 s), longer than clients wait. Re-sending a write
is safe because it keeps its request id: if the old leader did commit it, the new leader has the
entry in its log and the state machine answers the re-sent copy from its dedupe window.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from meshfed.fsm.state import StateStore
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.codec import encode_request
from meshfed.rpc.errors import ERR_NO_LEADER, ERR_NO_PATH, RPCError, unavailable
from meshfed.rpc.header import DEFAULT_QUERY_TIME, MAX_QUERY_TIME, QueryMeta, RequestHeader
from meshfed.rpc.stream import ClientStream
from meshfed.server.endpoints.ports import LeaderLookup
from meshfed.server.raft import RaftError
from meshfed.server.requests.coalesce import Coalescer, coalesce_key
from meshfed.server.requests.waiters import Waiters

log = logging.getLogger(__name__)

T = TypeVar("T")

RPC_HOLD_TIMEOUT = 7.0
MAX_FORWARD_HOPS = 4
NON_BLOCKING_RPC_TIMEOUT = 10.0
# How often the leader is compared with the targets of in-flight forwarded calls. An election takes
# 0.2-0.5 s (times raft_multiplier); checking five times a second keeps re-routing well inside the
# hold window. One watcher does the check for every call in flight, so a thousand forwarded
# blocking queries cost one check, not a thousand.
LEADER_RECHECK_INTERVAL = 0.2
ERR_LEADER_MOVED = "Leader changed while the request was forwarded"

# Cross-DC hook: (datacenter, method, header, body, timeout) -> (meta, body)
RemoteCaller = Callable[[str, str, RequestHeader, Any, float], Awaitable[tuple[QueryMeta, Any]]]


def rpc_timeout(header: RequestHeader) -> float:
    """Client deadline for a forwarded call: the blocking time (with jitter) plus the hold time."""
    if not header.blocking:
        return NON_BLOCKING_RPC_TIMEOUT + RPC_HOLD_TIMEOUT
    wait = DEFAULT_QUERY_TIME if header.max_query_time <= 0 else min(header.max_query_time, MAX_QUERY_TIME)
    return wait * (1 + 1 / 16) + RPC_HOLD_TIMEOUT


def leader_moved(sent_to: str, current_leader: str | None, is_leader: bool) -> bool:
    """Should a call forwarded to `sent_to` be abandoned? Yes once this server's Raft view names
    another leader, no leader at all (Raft drops a leader it has not heard from for an election
    timeout), or this server itself."""
    return is_leader or current_leader != sent_to


class LazyBody:
    """A request body built only if the call leaves this server. A caller holding decoded records
    (the HTTP write routes) would otherwise convert them to the wire form and the endpoint back
    again on every local write; that round trip was ~10 % of the leader's time under 64 writers."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build

    def get(self) -> Any:
        return self._build()


# Why a call held for a leader: none known; a Raft refusal here (leadership changing); the leader
# unreachable, or the call cancelled on the way; the leader moved while the call was forwarded;
# the leader's own handler answered UNAVAILABLE (it has no leader either).
HOLD_REASONS = ("no_leader", "raft", "transport", "leader_moved", "unavailable")


class Router:
    def __init__(
        self,
        *,
        datacenter: str,
        raft: LeaderLookup,
        state: StateStore,
        pool: ConnectionPool,
        on_forward: Callable[[str], None] | None = None,
        server_name: str = "",
        coalesce: bool = True,
    ) -> None:
        self.datacenter = datacenter
        self._server_name = server_name  # TLS name servers of this DC are verified against
        self._raft = raft
        self._state = state
        self._pool = pool
        self.remote: RemoteCaller | None = None
        self._on_forward = on_forward  # label: "leader" or the target datacenter
        # Forwarded calls in flight, by the leader RPC address they went to: one future per call
        # (waiters.py says why), resolved when the leader moves away from that address.
        self._moved: Waiters[str, None] = Waiters()
        self._watcher: asyncio.Task[None] | None = None
        # Identical forwarded blocking reads share one call to the leader (coalesce.py); off only
        # to measure what the sharing saves.
        self.shared_calls: Coalescer[tuple[QueryMeta, Any]] | None = Coalescer() if coalesce else None
        # Forwarded blocking reads now waiting here (callers) and the calls to the leader that
        # carry them (upstream): the gap is what sharing saves; both are live gauges.
        self.forwarded_blocking_callers = 0
        self.forwarded_blocking_upstream = 0
        self._relayed: set[ClientStream] = set()  # streams opened on the leader for a caller here
        # Retries inside the hold, by reason, and holds that ran out: the hold hides
        # a leaderless moment from clients, these show it to the operator (counters at scrape).
        self.hold_retries: collections.Counter[str] = collections.Counter(dict.fromkeys(HOLD_REASONS, 0))
        self.holds_exhausted = 0

    def leader_rpc_address(self) -> str | None:
        leader = self._raft.leader()
        if leader is None:
            return None
        _, servers = self._state.servers()
        for server in servers:
            if server.raft_address == leader and server.datacenter.lower() == self.datacenter.lower():
                return server.rpc_address
        return None

    async def serve(
        self,
        method: str,
        header: RequestHeader,
        body: Any,
        local: Callable[[], Awaitable[T]],
        *,
        write: bool,
    ) -> T | tuple[QueryMeta, Any]:
        """Run `local()` here if this server should answer, else forward and return the remote answer.
        `body` (or, for a LazyBody, what it builds) is what a forwarded call sends."""
        target_dc = header.datacenter or self.datacenter
        if target_dc.lower() != self.datacenter.lower():
            return await self._forward_dc(target_dc, method, header, body.get() if isinstance(body, LazyBody) else body)
        if header.hops > MAX_FORWARD_HOPS:
            raise unavailable(f"rpc {method} forwarded too many times (routing loop?)")

        deadline = time.monotonic() + RPC_HOLD_TIMEOUT
        attempt = 0
        while True:
            attempt += 1
            leader_address = None
            try:
                if self._serve_here(header, write):
                    return await local()
                leader_address = self.leader_rpc_address()
                if leader_address is not None:
                    if self._on_forward:
                        self._on_forward("leader")
                    if isinstance(body, LazyBody):
                        body = body.get()
                    return await self._call_leader(leader_address, method, header, body, write)
                failure: Exception = unavailable(ERR_NO_LEADER)
                reason = "no_leader"
            except RaftError as exc:
                if exc.disk_full:  # holding cannot help until an operator frees space: say so now
                    # INTERNAL (HTTP 500, logged), not RESOURCE_EXHAUSTED: that is HTTP 429, Consul's
                    # "slow down", and no client retry clears a full disk.
                    raise RPCError(grpc.StatusCode.INTERNAL, str(exc)) from None
                failure = unavailable(f"{ERR_NO_LEADER}: {exc}" if not exc.maybe_applied else str(exc))
                reason = "raft"
            except RPCError as exc:
                if exc.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                if leader_address is not None and exc.transport:
                    self._pool.drop_if_failing(leader_address, self._server_name)
                failure = exc
                reason = ("transport" if exc.transport else
                          "leader_moved" if exc.message.startswith(ERR_LEADER_MOVED) else "unavailable")
            if time.monotonic() >= deadline:
                self.holds_exhausted += 1
                if isinstance(failure, RPCError) and failure.message.startswith(ERR_NO_LEADER):
                    raise failure
                raise unavailable(f"{ERR_NO_LEADER} (last error: {failure})")
            self.hold_retries[reason] += 1
            if attempt == 1:
                log.debug("rpc %s: no usable leader yet, holding (%s)", method, failure)
            await asyncio.sleep(random.uniform(0, RPC_HOLD_TIMEOUT / 16))

    async def _call_leader(
        self, leader_address: str, method: str, header: RequestHeader, body: Any, write: bool = False
    ) -> tuple[QueryMeta, Any]:
        """Forward to the leader, abandoning the call if the leader moves while we wait.

        A blocking read joins an identical one already in flight to the same leader, if any.

        Raises:
            RPCError: UNAVAILABLE with ERR_LEADER_MOVED when abandoned (the caller holds and
                re-routes), or whatever the leader answered.
        """
        forwarded = header.forwarded()
        blocking_read = header.blocking and not write

        async def send() -> tuple[QueryMeta, Any]:
            if blocking_read:
                self.forwarded_blocking_upstream += 1
            try:
                return await self._pool.call(
                    leader_address, method, forwarded, body, timeout=rpc_timeout(header), server_name=self._server_name
                )
            finally:
                if blocking_read:
                    self.forwarded_blocking_upstream -= 1

        if self.shared_calls is not None and blocking_read:
            key = coalesce_key(leader_address, method, forwarded, encode_request(forwarded, body), write=write)
            call = asyncio.ensure_future(self.shared_calls.run(key, send))
        else:
            call = asyncio.ensure_future(send())
        if blocking_read:
            self.forwarded_blocking_callers += 1
        moved = self._watch_from(leader_address)
        try:
            await asyncio.wait({call, moved}, return_when=asyncio.FIRST_COMPLETED)
            if call.done():
                return call.result()
            log.info("rpc %s: leader moved away from %s while forwarded; re-routing", method, leader_address)
            raise unavailable(f"{ERR_LEADER_MOVED} (was {leader_address})")
        finally:
            if blocking_read:
                self.forwarded_blocking_callers -= 1
            self._unwatch(leader_address, moved)
            if not call.done():
                call.cancel()

    def _watch_from(self, leader_address: str) -> asyncio.Future[None]:
        """A future of the caller's own that resolves when the leader is no longer `leader_address`."""
        moved = self._moved.add((leader_address,))
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_leader())
        return moved

    def _unwatch(self, leader_address: str, moved: asyncio.Future[None]) -> None:
        self._moved.discard(moved, (leader_address,))

    async def _watch_leader(self) -> None:
        """Runs while any forwarded call is in flight; resolves the futures of moved leaders."""
        while self._moved:
            await asyncio.sleep(LEADER_RECHECK_INTERVAL)
            current, leading = self.leader_rpc_address(), self._raft.is_leader()
            for sent_to in self._moved.keys():
                if leader_moved(sent_to, current, leading):
                    self._moved.resolve(sent_to, None)  # later calls to the same address wait afresh

    async def open_leader_stream(self, method: str, header: RequestHeader, first: Any) -> ClientStream | None:
        """None on the leader (serve the stream here); elsewhere the same stream opened on the
        leader, for the caller to relay. No holding: a stream's dialer redials on its own."""
        if self._raft.is_leader():
            return None
        if header.hops > MAX_FORWARD_HOPS:
            raise unavailable(f"stream {method} forwarded too many times (routing loop?)")
        leader_address = self.leader_rpc_address()
        if leader_address is None:
            raise unavailable(ERR_NO_LEADER)
        if self._on_forward:
            self._on_forward("leader")
        try:
            stream = await self._pool.open_stream(leader_address, method, header.forwarded(), first,
                                                  server_name=self._server_name)
        except RPCError as exc:
            if exc.transport:
                self._pool.drop_if_failing(leader_address, self._server_name)
            raise
        # As for a forwarded call: once our view of the leader moves away from the server the
        # stream went to, close it (a cut-off leader may keep its socket open), so the relay
        # ends and the dialer redials towards the new leader.
        moved = self._watch_from(leader_address)

        def leader_moved(_: asyncio.Future[None]) -> None:
            stream.close(f"{ERR_LEADER_MOVED} (was {leader_address})")

        moved.add_done_callback(leader_moved)
        self._relayed.add(stream)
        stream.on_close(lambda: (moved.remove_done_callback(leader_moved), self._unwatch(leader_address, moved),
                                 self._relayed.discard(stream)))
        return stream

    def close_streams(self, reason: str) -> None:
        """End every relayed stream now, telling its caller `reason` (this server is shutting
        down): left open they would hold the gRPC server's shutdown grace and then end with a
        bare cancellation."""
        for stream in list(self._relayed):
            stream.close(reason)

    def _serve_here(self, header: RequestHeader, write: bool) -> bool:
        if self._raft.is_leader():
            return True
        if write or header.require_consistent:
            return False
        if header.allow_stale:
            # Consul serves stale reads locally once the server has ever had leader contact.
            return self._raft.last_contact() != float("inf")
        return False

    async def _forward_dc(self, datacenter: str, method: str, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        if self.remote is None:
            raise RPCError(grpc.StatusCode.UNAVAILABLE, f"{ERR_NO_PATH}: {datacenter}")
        if self._on_forward:
            self._on_forward(datacenter)
        return await self.remote(datacenter, method, header.forwarded(), body, rpc_timeout(header))

"""One connected peering stream on a leader, the same on both ends (reference peering.md §1.2-§1.6).

The dialer's leader runs a session on the stream it opened (dialing.py), the acceptor's leader
on the stream it serves (acceptor.py); after the first message the two are symmetric. A session
runs three tasks until one ends:
* sender: our mesh description and exports, on open and then whenever the state store says the
  inputs changed (a watch on the tables they come from, never a poll), plus a Heartbeat every
  `heartbeat` seconds (shorter when the peer announces a shorter silence timeout than ours); it also ends the session when the peering row stops being ACTIVE or the
  caller's `still_valid` says so (the dialer's addresses changed);
* receiver: applies the peer's messages; a Terminated marks the peering TERMINATED (imports and
  bundle dropped by the FSM, peering.md §5); silence past the tracker's timeout ends the stream;
* committer: stores the peer's exports through Raft, only when they differ from what is stored;
  a burst of updates while a write is in flight becomes one write.
`StreamHub` holds the live sessions of this leader: a new stream for a peering replaces the old
one (its transport may be dead without either end knowing yet), a delete sends Terminated on the
live one, and a step-down stops them all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from meshfed.fsm.peering.commands import PeeringImportSet, PeeringTrustBundleWrite, PeeringWrite
from meshfed.fsm.peering.records import STATE_ACTIVE, STATE_TERMINATED, Peering
from meshfed.fsm.state import StateStore
from meshfed.rpc.codec import encode_message
from meshfed.rpc.stream import Send
from meshfed.server.endpoints.ports import Proposer
from meshfed.server.endpoints.writes import propose
from meshfed.server.peering.exports import exported_instances
from meshfed.server.peering.mesh import advertised_addresses, local_mesh, peer_bundle
from meshfed.server.peering.messages import (
    HEARTBEAT,
    MESH,
    SERVER_ADDRESSES,
    TERMINATED,
    Exports,
    ImportView,
    export_changes,
    kind_of,
    message,
    server_addresses,
)
from meshfed.server.peering.tracker import StreamTracker
from meshfed.server.requests.watch import WatchHub

log = logging.getLogger(__name__)

# What our exports and mesh description are computed from, and the peering rows themselves.
WATCHED_TABLES = ("nodes", "services", "checks", "config_entries", "connect_ca", "peerings", "peering_trust_bundles",
                  "servers")
HEARTBEAT_INTERVAL = 15.0  # Consul's defaultOutgoingHeartbeatInterval


class StreamEnded(Exception):
    """The stream should close and (on the dialer) be dialed again; the message says why."""


MIN_HEARTBEAT_INTERVAL = 0.25  # whatever timeout a peer announces


def heartbeat_interval(timeout: float) -> float:
    """Well under a silence timeout: a quarter of it, at most Consul's 15 s."""
    return max(MIN_HEARTBEAT_INTERVAL, min(HEARTBEAT_INTERVAL, timeout / 4))


def announced_timeout(value: Any) -> float | None:
    """The silence timeout a peer announced (in its first message or its Heartbeats), so our
    heartbeats come often enough for its setting, which may be shorter than ours."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class PeerSession:
    def __init__(self, hub: StreamHub, peering: Peering, still_valid: Callable[[Peering], str] | None = None,
                 peer_timeout: float | None = None) -> None:
        self._hub = hub
        self.peering = peering
        self.name = peering.name
        self._still_valid = still_valid
        loop = asyncio.get_running_loop()
        self._stop: asyncio.Future[str] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()  # the transport is closed
        self._import = ImportView()
        self._dirty = asyncio.Event()
        self._heartbeat = hub.heartbeat
        self._retimed: asyncio.Future[None] = loop.create_future()
        self._peer_timeout(peer_timeout)
        self.terminated_here = False  # we sent Terminated: the other end must not be redialed
        self._terminated_there = False  # the peer sent it: the receiver ends the session

    def stop(self, reason: str) -> None:
        if not self._stop.done():
            self._stop.set_result(reason)

    def terminate(self) -> None:
        """Send Terminated, then end (the local peering is being deleted)."""
        self.terminated_here = True
        self.stop("")

    async def run(self, incoming: AsyncIterator[Any], send: Send) -> None:
        """Returns when the stream ended by a Terminated (either way); raises StreamEnded or the
        transport's error otherwise."""
        tracker = self._hub.tracker

        async def counted(out: dict[str, Any]) -> None:
            await send(out)
            tracker.sent(self.name, len(encode_message(out)))

        tasks = [asyncio.ensure_future(t) for t in (self._sender(counted), self._receiver(incoming),
                                                     self._committer())]
        tracker.connected(self.name, True)
        try:
            await asyncio.wait([*tasks, self._stop], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            if self._stop.done():
                if self.terminated_here:
                    await counted(message(TERMINATED))
                    return
                raise StreamEnded(self._stop.result())
            receiver = tasks[1]
            if receiver.done() and not receiver.cancelled() and receiver.exception() is None:
                return  # a received Terminated (the sender may have noticed the row change first)
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.result()  # raises what ended it
            return
        finally:
            for task in tasks:
                task.cancel()
                # A task may still end with an error of its transport while being cancelled:
                # the session's ending is reported once, by run, not again by asyncio.
                task.add_done_callback(_retrieve)
            tracker.connected(self.name, False)

    def _peer_timeout(self, timeout: float | None) -> None:
        interval = min(self._hub.heartbeat, heartbeat_interval(timeout)) if timeout else self._hub.heartbeat
        if interval != self._heartbeat:
            self._heartbeat = interval
            if not self._retimed.done():
                self._retimed.set_result(None)  # the sender's wait was for the old interval

    def _invalid(self) -> str:
        """Why the session should end now, or ""."""
        if self._terminated_there:
            return ""  # the receiver is marking the row TERMINATED and ends the session cleanly
        _, row = self._hub.state.peering_get(self.name)
        if row is None or row.id != self.peering.id:
            return "the peering was deleted"
        if row.state != STATE_ACTIVE:
            return f"the peering is {row.state}"
        return self._still_valid(row) if self._still_valid is not None else ""

    async def _sender(self, send: Send) -> None:
        hub = self._hub
        sent_mesh: Any = object()
        sent_exports: Exports | None = None
        sent_addresses: tuple[str, ...] = ()
        last_heartbeat = -HEARTBEAT_INTERVAL
        while True:
            futures = hub.watches.futures(WATCHED_TABLES)  # taken before reading: no change missed
            if self._retimed.done():
                self._retimed = asyncio.get_running_loop().create_future()
            reason = self._invalid()
            if reason:
                raise StreamEnded(reason)
            mesh = local_mesh(hub.state, hub.datacenter, self.name)
            if mesh != sent_mesh:
                await send(message(MESH, Mesh=mesh))
                sent_mesh = mesh
            if not self.peering.is_dialer:  # only the acceptor is dialed
                addresses = advertised_addresses(hub.state)
                if addresses and addresses != sent_addresses:
                    await send(message(SERVER_ADDRESSES, Addresses=list(addresses)))
                    sent_addresses = addresses
            exports = exported_instances(hub.state, self.name, hub.datacenter)
            for change in export_changes(sent_exports, exports):
                await send(change)
            sent_exports = exports
            now = time.monotonic()
            if now >= last_heartbeat + self._heartbeat:
                await send(message(HEARTBEAT, Timeout=hub.tracker.timeout))
                last_heartbeat = now
            wait = last_heartbeat + self._heartbeat - time.monotonic()
            await hub.watches.wait_any([*futures, self._retimed], max(0.0, wait))

    async def _receiver(self, incoming: AsyncIterator[Any]) -> None:
        hub, messages = self._hub, aiter(incoming)
        while True:
            try:
                received = await asyncio.wait_for(anext(messages), hub.tracker.timeout)
            except StopAsyncIteration:
                raise StreamEnded("the peer closed the stream") from None
            except TimeoutError:
                raise StreamEnded(f"nothing heard from the peer for {hub.tracker.timeout:.0f}s") from None
            kind = kind_of(received)
            hub.tracker.received(self.name, heartbeat=kind == HEARTBEAT, size=len(encode_message(received)))
            if kind == HEARTBEAT:
                self._peer_timeout(announced_timeout(received.get("Timeout")))
            if kind == TERMINATED:
                log.info("peer of peering %s deleted it: marking it %s", self.name, STATE_TERMINATED)
                self._terminated_there = True
                _, row = hub.state.peering_get(self.name)
                if row is not None and row.id == self.peering.id:
                    await propose(hub.raft, "", PeeringWrite(dataclasses.replace(row, state=STATE_TERMINATED)))
                return
            if kind == SERVER_ADDRESSES:
                await self._store_server_addresses(server_addresses(received))
                continue
            if kind == MESH:
                bundle = peer_bundle(self.name, received.get("Mesh"))
                if bundle is not None and not bundle.same_content(hub.state.peering_trust_bundle(self.name)):
                    await propose(hub.raft, "", PeeringTrustBundleWrite(bundle))
            elif kind != HEARTBEAT and self._import.apply(received):
                self._dirty.set()

    async def _store_server_addresses(self, addresses: tuple[str, ...]) -> None:
        """The dialer keeps where the acceptor now says to dial it: the next redial uses them
        (a token's addresses go stale when the peer's servers are replaced)."""
        _, row = self._hub.state.peering_get(self.name)
        if row is None or not row.is_dialer or row.id != self.peering.id or row.peer_server_addresses == addresses:
            return
        log.info("peering %s: the peer is now dialed at %s", self.name, ", ".join(addresses))
        await propose(self._hub.raft, "", PeeringWrite(dataclasses.replace(row, peer_server_addresses=addresses)))

    async def _committer(self) -> None:
        hub = self._hub
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            incoming = self._import.records(self.name)
            _, stored = hub.state.peering_imported(self.name)
            if [(s.service, s.nodes) for s in stored] != [(s.service, s.nodes) for s in incoming]:
                await propose(hub.raft, "", PeeringImportSet(self.name, incoming))


class StreamHub:
    """This leader's live sessions, and what they share."""

    def __init__(self, *, state: StateStore, raft: Proposer, watches: WatchHub, tracker: StreamTracker,
                 datacenter: str) -> None:
        self.state = state
        self.raft = raft
        self.watches = watches
        self.tracker = tracker
        self.datacenter = datacenter
        self.heartbeat = heartbeat_interval(tracker.timeout)
        self._live: dict[str, PeerSession] = {}

    @property
    def leading(self) -> bool:
        return self.tracker.leading

    def open(self, peering: Peering, still_valid: Callable[[Peering], str] | None = None,
             peer_timeout: float | None = None) -> PeerSession:
        """A session for `peering`, replacing (stopping) one still registered for it."""
        session = PeerSession(self, peering, still_valid, peer_timeout)
        old = self._live.get(peering.name.lower())
        if old is not None:
            old.stop("replaced by a newer stream for the same peering")
        self._live[peering.name.lower()] = session
        return session

    def close(self, session: PeerSession) -> None:
        """The session's transport is closed (after a Terminated it sent went out)."""
        if self._live.get(session.name.lower()) is session:
            del self._live[session.name.lower()]
        if not session.closed.done():
            session.closed.set_result(None)

    def stop_all(self, reason: str) -> None:
        for session in list(self._live.values()):
            session.stop(reason)
        self._live.clear()

    async def terminate(self, peer_name: str, timeout: float = 2.0) -> bool:
        """Send Terminated on the peering's live stream and wait (bounded) until it went out;
        False when no stream for it is connected here."""
        session = self._live.get(peer_name.lower())
        if session is None:
            return False
        session.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(session.closed), timeout)
        except TimeoutError:
            log.warning("peering %s: the Terminated message may not have reached the peer", peer_name)
        return True

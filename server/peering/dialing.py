"""The dialer's leader holds one stream per ACTIVE dialing peering (reference peering.md §1.2).

A leader routine (cancelled on step-down, with every stream it holds) watches the peering rows
and keeps one dial task per peering that should be connected. A dial task opens
`Peering/StreamResources` on the peer's servers (TLS verified against the CA from the token,
the token's server name), authenticates with PeerID and StreamSecret in the first message and
runs a session (session.py) on it until it ends; then it redials with jittered exponential
backoff, trying the next address after a transport failure. Addresses come from `dial_addresses`
(the token's, or our own gateways with PeerThroughMeshGateways); when they change the session
ends and the next dial uses the new ones. A peer that no longer knows the peering answers
NotFound: ours becomes TERMINATED and is not redialed (peering.md §5). Every reconnect is logged
with its reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from meshfed.fsm.peering.commands import PeeringWrite
from meshfed.fsm.peering.records import STATE_ACTIVE, STATE_TERMINATED, Peering
from meshfed.replication.loop import Backoff, should_log_failure
from meshfed.rpc.errors import RPCError
from meshfed.rpc.stream import ClientStream
from meshfed.server.endpoints.writes import propose
from meshfed.server.peering.dial import PeerDialer
from meshfed.server.peering.mesh import dial_addresses
from meshfed.server.peering.messages import STREAM_METHOD, open_message
from meshfed.server.peering.session import StreamEnded, StreamHub

log = logging.getLogger(__name__)

# Redial quickly (a leader change on the peer's side takes well under a second) but no faster
# than every 5 s against a peer that is down; a stream that lived this long resets the backoff.
REDIAL_BACKOFF = Backoff(base=0.25, cap=5.0, jitter=0.2)
HEALTHY_STREAM_SECONDS = 10.0
# A peer's server sends its first message (its mesh, a heartbeat, or an error) as soon as the
# stream opens, one relay hop at most. A stream silent for this long is held by something that
# will not answer (a wedged server, a wrong address that speaks gRPC): leave it for the next
# address rather than wait out the stream timeout, two minutes by default. The wait doubles with
# each failed attempt in a row (first_message_bound), so a peer that is only slow still connects.
FIRST_MESSAGE_TIMEOUT = 5.0
MAX_FIRST_MESSAGE_DOUBLINGS = 8  # keeps the power small; the stream timeout caps it long before
CLOSE_GRACE = 2.0  # how long a Terminated we sent may take to reach the peer
SUPERVISOR_TABLES = ("peerings", "peering_secrets")


def wants_stream(peering: Peering) -> bool:
    return peering.is_dialer and peering.state == STATE_ACTIVE


class StreamDialer:
    def __init__(self, *, hub: StreamHub, dialer: PeerDialer) -> None:
        self._hub = hub
        self._dialer = dialer

    async def run(self) -> None:
        """The leader routine: one dial task per peering that wants a stream."""
        hub = self._hub
        tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}
        try:
            while True:
                futures = hub.watches.futures(SUPERVISOR_TABLES)
                _, peerings = hub.state.peering_list()
                wanted = {p.name: p for p in peerings if wants_stream(p)}
                for name, (peering_id, task) in list(tasks.items()):
                    if task.done() or name not in wanted or wanted[name].id != peering_id:
                        task.cancel()
                        del tasks[name]
                for name, peering in wanted.items():
                    if name not in tasks:
                        tasks[name] = (peering.id, asyncio.ensure_future(self._dial(peering)))
                await hub.watches.wait_any(futures, 30.0)
        finally:
            for _, task in tasks.values():
                task.cancel()
            await asyncio.gather(*(task for _, task in tasks.values()), return_exceptions=True)

    async def _dial(self, peering: Peering) -> None:
        """Keep `peering` connected until it is terminated or stops wanting a stream."""
        hub, name = self._hub, peering.name
        failures, turn = 0, 0
        while True:
            heard = Heard()
            _, row = hub.state.peering_get(name)
            if row is None or row.id != peering.id or not wants_stream(row):
                return
            addresses = dial_addresses(hub.state, row, datacenter=hub.datacenter)
            if not addresses:
                log.warning("peering %s: no address to dial", name)
                return
            address = addresses[turn % len(addresses)]
            started = time.monotonic()
            try:
                if await self._connect(row, address, addresses, heard, first_message_bound(failures, hub.tracker.timeout)):
                    return  # terminated, by us or by the peer
                reason = "the stream ended"
            except RPCError as exc:
                if exc.code == grpc.StatusCode.NOT_FOUND:
                    log.info("peer of peering %s no longer knows it: marking it %s", name, STATE_TERMINATED)
                    await propose(hub.raft, "", PeeringWrite(dataclasses.replace(row, state=STATE_TERMINATED)))
                    return
                reason = str(exc)
                # Next address after a transport failure, or when a server ended a working
                # stream with an error (it is stepping down or shutting down).
                if exc.transport or heard.anything:
                    turn += 1
            except (StreamEnded, ValueError) as exc:
                reason = str(exc)
            except Exception as exc:  # e.g. a Raft write failed: keep the peering's task alive
                reason = f"{type(exc).__name__}: {exc}"
            failures = 1 if time.monotonic() - started > HEALTHY_STREAM_SECONDS else failures + 1
            wait = REDIAL_BACKOFF.delay(failures)
            # A working stream's end is always worth a line; failing redials are thinned out.
            log.log(logging.WARNING if heard.anything or should_log_failure(failures) else logging.DEBUG,
                    "peering %s: stream to %s ended (%s); redialing in %.1fs (attempt %d)",
                    name, address, reason, wait, failures)
            await asyncio.sleep(wait)

    async def _connect(self, peering: Peering, address: str, addresses: tuple[str, ...], heard: Heard,
                       first_message_within: float) -> bool:
        """One stream's life; True when it ended with a Terminated (no redial)."""
        hub = self._hub
        secrets = hub.state.peering_secrets(peering.id)
        if secrets is None or not secrets.stream:
            raise StreamEnded("no stream secret stored for the peering")
        stream: ClientStream = await self._dialer.open_stream(
            address, peering.peer_ca_pems, peering.peer_server_name, STREAM_METHOD,
            open_message(peering.peer_id, secrets.stream, hub.datacenter, hub.tracker.timeout))

        def same_addresses(row: Peering) -> str:
            return "" if dial_addresses(hub.state, row, datacenter=hub.datacenter) == addresses else "the addresses to dial changed"

        session = hub.open(peering, same_addresses)
        try:
            await session.run(first_within(stream.messages(), first_message_within, peering.name, address, heard), stream.send)
            if session.terminated_here:
                # Half-close, then let the peer finish: it closes once it has stored TERMINATED
                # (cancelling earlier could cut its write short).
                await stream.done_writing()
                try:
                    await asyncio.wait_for(_drain(stream), CLOSE_GRACE)
                except (RPCError, TimeoutError):
                    pass
            return True
        finally:
            stream.close()
            hub.close(session)


def first_message_bound(failures: int, stream_timeout: float) -> float:
    """How long a new stream may stay silent, after `failures` failed attempts in a row."""
    return min(stream_timeout, FIRST_MESSAGE_TIMEOUT * 2 ** min(failures, MAX_FIRST_MESSAGE_DOUBLINGS))


class Heard:
    """Whether a stream delivered anything: the end of one that did is a disconnection, not one
    more failed attempt to connect."""

    anything = False


async def first_within(messages: AsyncIterator[Any], seconds: float, name: str, address: str,
                       heard: Heard) -> AsyncIterator[Any]:
    """`messages`, failing as a transport error (the dialer moves on to the next address) when
    the first one takes longer than `seconds`."""
    iterator = aiter(messages)
    try:
        first = await asyncio.wait_for(anext(iterator), seconds)
    except StopAsyncIteration:
        return
    except TimeoutError:
        raise RPCError(grpc.StatusCode.UNAVAILABLE, f"{address} accepted the stream but sent nothing "
                       f"within {seconds:.0f}s", transport=True) from None
    heard.anything = True
    log.info("peering %s: stream to %s connected", name, address)
    yield first
    async for message in iterator:
        yield message


async def _drain(stream: ClientStream) -> None:
    async for _ in stream.messages():
        pass

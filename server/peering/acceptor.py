"""The acceptor's peer-facing RPCs: ExchangeSecret (connect-data.md §D.3), the stream
(StreamResources, peering.md §1) and the Terminate fallback.

These are called by another cluster's leader, which holds no ACL token of ours: the secret is
the authentication. The establishment secret is spent once (in the FSM, compared in constant
time there); every later call must present the stream secret it bought (compared in constant
time here). The stream itself is symmetric once open (session.py).
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from meshfed.fsm.peering.commands import PeeringExchangeSecret, PeeringWrite
from meshfed.fsm.peering.records import STATE_DELETING, STATE_TERMINATED, Peering
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid, not_found, unavailable
from meshfed.rpc.header import QueryMeta, RequestHeader, new_request_id
from meshfed.rpc.service import Handler
from meshfed.rpc.stream import StreamMethod, outbox, relay
from meshfed.server.endpoints.ports import LeaderStreams, Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import propose
from meshfed.server.peering.messages import STREAM_METHOD
from meshfed.server.peering.session import StreamEnded, StreamHub, announced_timeout
from meshfed.server.raft import RaftError

log = logging.getLogger(__name__)


def _denied(message: str = "invalid peering stream secret") -> RPCError:
    return RPCError(grpc.StatusCode.PERMISSION_DENIED, message)


class PeeringAcceptor:
    def __init__(self, *, state: StateStore, raft: Proposer, router: RequestRouter, queries: Queries,
                 hub: StreamHub, leader_streams: LeaderStreams) -> None:
        self._hub = hub
        self._leader_streams = leader_streams
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries

    def handlers(self) -> dict[str, Handler | StreamMethod]:
        return {
            "Peering/ExchangeSecret": self.exchange_secret,
            STREAM_METHOD: StreamMethod(self.stream_resources),
            "Peering/Terminate": self.terminate,
        }

    async def exchange_secret(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        peer_id = body.get("PeerID") if isinstance(body, dict) else None
        secret = body.get("EstablishmentSecret") if isinstance(body, dict) else None
        if not isinstance(peer_id, str) or not peer_id:
            raise invalid("PeerID is required")
        if not isinstance(secret, str) or not secret:
            raise _denied("invalid peering establishment secret")
        # A remote caller names no datacenter of ours: route within this cluster only. A request
        # id fixed here makes a retry after a leader change land on the remembered result.
        header = RequestHeader(request_id=header.request_id or new_request_id(), hops=header.hops)

        async def local() -> tuple[QueryMeta, Any]:
            stream_secret = str(uuid.uuid4())
            try:
                result = await propose(self._raft, header.request_id,
                                       PeeringExchangeSecret(peer_id, secret, stream_secret))
            except RPCError as exc:
                if exc.code == grpc.StatusCode.FAILED_PRECONDITION:  # the FSM's secret mismatch
                    raise _denied(exc.message) from None
                raise
            return self._queries.meta(self._state.index("peerings")), {"StreamSecret": result.value}

        return await self._router.serve("Peering/ExchangeSecret", header, body, local, write=True)

    def _authenticated(self, body: Any) -> Peering:
        """The peering a peer's call names, if it presents that peering's stream secret."""
        peer_id = body.get("PeerID") if isinstance(body, dict) else None
        secret = body.get("StreamSecret") if isinstance(body, dict) else None
        if not isinstance(peer_id, str) or not isinstance(secret, str) or not secret:
            raise invalid("PeerID and StreamSecret are required")
        peering = self._state.peering_by_id(peer_id)
        if peering is None or peering.state in (STATE_DELETING, STATE_TERMINATED):
            raise not_found(f"peering with ID {peer_id} not found")
        stored = self._state.peering_secrets(peer_id)
        if stored is None or not stored.stream or not hmac.compare_digest(stored.stream.encode(), secret.encode()):
            raise _denied()
        return peering

    async def terminate(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """The dialer deleted the peering: ours becomes TERMINATED (imports and secrets dropped,
        the row kept until deleted here, reference peering.md §5)."""
        self._authenticated(body)
        header = RequestHeader(request_id=header.request_id or new_request_id(), hops=header.hops)

        async def local() -> tuple[QueryMeta, Any]:
            peering = self._authenticated(body)  # again on the leader, which holds the truth
            await propose(self._raft, header.request_id,
                          PeeringWrite(dataclasses.replace(peering, state=STATE_TERMINATED)))
            return self._queries.meta(self._state.index("peerings")), {}

        return await self._router.serve("Peering/Terminate", header, body, local, write=True)

    async def stream_resources(self, header: RequestHeader, first: Any,
                               incoming: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The dialer's stream (peering.md §1.2): its first message authenticates it. Only our
        leader holds peering streams; any other server relays the stream to the leader, because
        a dialer that peers through mesh gateways reaches whichever server the gateway picks
        and cannot choose the leader (peering.md §4). When leadership moves the old leader ends
        its streams and a relaying follower drops its relay (Router.open_leader_stream); the
        dialer redials and lands on the new leader."""
        peering = self._authenticated(first)  # on every server: a bad secret costs no hop
        upstream = await self._leader_streams.open_leader_stream(STREAM_METHOD, header, first)
        if upstream is not None:
            async for message in relay(upstream, incoming):
                yield message
            return
        if not self._hub.leading:
            raise unavailable("this server was just elected and does not serve peering streams yet; retry")
        session = self._hub.open(peering, peer_timeout=announced_timeout(first.get("HeartbeatTimeout")))
        log.info("peering %s: the peer's stream is open here", peering.name)
        ended = "the call was cancelled"
        try:
            async for message in outbox(lambda send: session.run(incoming, send)):
                yield message
            ended = "Terminated"
        except (StreamEnded, RaftError) as exc:  # the dialer redials
            ended = str(exc)
            raise unavailable(str(exc)) from None
        except ValueError as exc:  # a malformed message: the dialer redials and starts over
            ended = f"a malformed message: {exc}"
            raise invalid(f"peering stream: {exc}") from None
        except RPCError as exc:
            ended = str(exc)
            raise
        finally:
            self._hub.close(session)
            log.info("peering %s: the peer's stream ended here (%s)", peering.name, ended)

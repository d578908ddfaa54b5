"""The acceptor's StreamResources handler (server/peering/acceptor.py) driven directly: the first
message authenticates (constant-time secret compare, Consul's texts), a follower relays the
stream to its leader, the leader serves it only once its peering routine runs, and a step-down
ends it with UNAVAILABLE so the dialer redials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from meshfed.fsm.peering.commands import PeeringExchangeSecret, PeeringWrite
from meshfed.fsm.peering.records import Peering
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.peering.acceptor import PeeringAcceptor
from meshfed.server.peering.messages import HEARTBEAT, MESH, SERVICES, STREAM_METHOD
from meshfed.server.peering.session import StreamHub
from meshfed.server.peering.tracker import StreamTracker
from tests.aio import run
from tests.twins.server import ServerTwin, server_twin


class Upstream:
    """The leader's end as a follower's relay sees it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    async def send(self, message: Any) -> None:
        self.sent.append(message)

    async def done_writing(self) -> None:
        self.sent.append("half-close")

    async def messages(self) -> AsyncIterator[Any]:
        await asyncio.sleep(0.05)  # the relay forwards the follower's incoming meanwhile
        yield "from the leader"

    def close(self) -> None:
        self.closed = True


class LeaderStreams:
    def __init__(self, upstream: Upstream | None) -> None:
        self.upstream = upstream
        self.opened: list[tuple[str, Any]] = []

    async def open_leader_stream(self, method: str, header: RequestHeader, first: Any) -> Any:
        self.opened.append((method, first))
        return self.upstream


def acceptor(twin: ServerTwin, upstream: Upstream | None) -> tuple[PeeringAcceptor, StreamHub, LeaderStreams]:
    twin.raft.apply_now(PeeringWrite(Peering(id="a-1", name="cluster-02"), establishment_secret="e-1"))
    twin.raft.apply_now(PeeringExchangeSecret("a-1", "e-1", "s-1"))
    hub = StreamHub(state=twin.state, raft=twin.raft, watches=twin.watches, tracker=StreamTracker(timeout=60.0),
                    datacenter="dc1")
    streams = LeaderStreams(upstream)
    return PeeringAcceptor(state=twin.state, raft=twin.raft, router=twin.router, queries=twin.queries, hub=hub,
                           leader_streams=streams), hub, streams


async def incoming(*messages: Any) -> AsyncIterator[Any]:
    for message in messages:
        yield message
    await asyncio.Event().wait()  # the dialer keeps the stream open



def test_the_first_message_authenticates_the_stream() -> None:
    async def scenario() -> None:
        handler, _, streams = acceptor(server_twin(), Upstream())
        for first, code, text in (
            ({"PeerID": "a-1", "StreamSecret": "wrong"}, grpc.StatusCode.PERMISSION_DENIED,
             "invalid peering stream secret"),
            ({"PeerID": "nope", "StreamSecret": "s-1"}, grpc.StatusCode.NOT_FOUND, "peering with ID nope not found"),
            ({"PeerID": "a-1"}, grpc.StatusCode.INVALID_ARGUMENT, "PeerID and StreamSecret are required"),
            ("junk", grpc.StatusCode.INVALID_ARGUMENT, "PeerID and StreamSecret are required"),
        ):
            with pytest.raises(RPCError) as refused:
                await anext(handler.stream_resources(RequestHeader(), first, incoming()))
            assert (refused.value.code, refused.value.message) == (code, text)
        assert streams.opened == []  # refused here, without a hop to the leader

    run(scenario())


def test_a_follower_relays_the_stream_to_its_leader() -> None:
    async def scenario() -> None:
        upstream = Upstream()
        handler, _, streams = acceptor(server_twin(), upstream)
        first = {"PeerID": "a-1", "StreamSecret": "s-1"}
        got = [m async for m in handler.stream_resources(RequestHeader(), first, incoming("hello"))]
        assert got == ["from the leader"] and streams.opened == [(STREAM_METHOD, first)]
        assert upstream.sent == ["hello"] and upstream.closed

    run(scenario())


def test_the_leader_serves_only_while_its_routine_runs_and_a_step_down_ends_the_stream() -> None:
    async def scenario() -> None:
        handler, hub, _ = acceptor(server_twin(), None)
        first = {"PeerID": "a-1", "StreamSecret": "s-1", "HeartbeatTimeout": 60.0}
        with pytest.raises(RPCError) as early:
            await anext(handler.stream_resources(RequestHeader(), first, incoming()))
        assert early.value.code == grpc.StatusCode.UNAVAILABLE and "retry" in early.value.message

        hub.tracker.restart()  # the leader routine started
        stream = handler.stream_resources(RequestHeader(), first, incoming())
        assert [(await anext(stream))["Type"] for _ in range(3)] == [MESH, SERVICES, HEARTBEAT]
        assert hub.tracker.counters("cluster-02").streams == 1
        hub.stop_all("this server no longer leads")
        with pytest.raises(RPCError) as ended:
            await anext(stream)
        assert ended.value.code == grpc.StatusCode.UNAVAILABLE and ended.value.message == "this server no longer leads"
        assert not await hub.terminate("cluster-02")  # the session is gone from the hub

    run(scenario())

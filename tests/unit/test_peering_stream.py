"""The peering stream's message handling (server/peering/messages.py, session.py), without gRPC:
two leaders' sessions joined by in-memory pipes, each over a Raft twin (real state machine).
Pins that each side sends its exports on open and then only the changes, event-driven; that
each side stores what the other exports (both directions); and Terminated / silence endings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from meshfed.fsm import CatalogDeregister, CatalogRegister, ConfigEntrySet, ServerRegister
from meshfed.fsm.peering.commands import PeeringWrite
from meshfed.fsm.peering.records import STATE_ACTIVE, Peering
from meshfed.fsm.records import ConfigEntry, Node, NodeService, ServerInfo, to_wire
from meshfed.server.peering.messages import (
    DELETE,
    HEARTBEAT,
    SERVICES,
    TERMINATED,
    UPSERT,
    ImportView,
    export_changes,
    kind_of,
    message,
)
from meshfed.server.peering.session import StreamEnded, StreamHub, heartbeat_interval
from meshfed.server.peering.tracker import StreamTracker
from tests.aio import run
from tests.twins.raft import RaftTwin


def test_export_changes_sends_the_full_set_once_then_per_service_upserts_and_deletes() -> None:
    assert export_changes(None, {"web": [1]}) == [{"Type": SERVICES, "Services": {"web": [1]}}]
    assert export_changes({"web": [1], "db": [2]}, {"web": [1, 3], "api": []}) == [
        {"Type": UPSERT, "Service": "api", "Nodes": []},
        {"Type": UPSERT, "Service": "web", "Nodes": [1, 3]},
        {"Type": DELETE, "Service": "db"},
    ]
    assert export_changes({"web": [1]}, {"web": [1]}) == []


def test_import_view_applies_messages_and_refuses_malformed_ones() -> None:
    view = ImportView()
    with pytest.raises(ValueError, match="before the full Services set"):
        view.apply(message(UPSERT, Service="web", Nodes=[]))
    assert view.apply(message(SERVICES, Services={"web": []}))
    assert not view.apply(message(SERVICES, Services={"web": []}))
    assert view.apply(message(UPSERT, Service="db", Nodes=[]))
    assert not view.apply(message(DELETE, Service="nope"))
    assert view.apply(message(DELETE, Service="web"))
    assert view.services == {"db": []}
    for bad, text in ((message(UPSERT, Service="", Nodes=[]), "Service must be"),
                      (message(UPSERT, Service="db", Nodes="x"), "Nodes must be"),
                      (message(SERVICES, Services=[]), "map of service names")):
        with pytest.raises(ValueError, match=text):
            view.apply(bad)
    view.apply(message(UPSERT, Service="db", Nodes=[{"Node": 5}]))
    with pytest.raises(ValueError, match="undecodable"):
        view.records("cluster-01")
    for bad in ({"Type": "Subscribe"}, [], None):
        with pytest.raises(ValueError, match="unexpected message type"):
            kind_of(bad)
    assert heartbeat_interval(120) == 15.0 and heartbeat_interval(3) == 0.75


class Pipe:
    """One direction of the stream: what one session sends, the other's incoming messages."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.sent: list[Any] = []

    async def send(self, value: Any) -> None:
        self.sent.append(value)
        await self.queue.put(value)

    async def incoming(self) -> AsyncIterator[Any]:
        while True:
            yield await self.queue.get()


def exports(twin: RaftTwin, service: str, peer: str) -> None:
    twin.apply_now(ConfigEntrySet(ConfigEntry.of({"Kind": "exported-services", "Name": "default",
                                                  "Services": [{"Name": service, "Consumers": [{"Peer": peer}]}]})))


def register(twin: RaftTwin, node: str, service: str, port: int = 80) -> None:
    twin.apply_now(CatalogRegister(Node(node=node, address="10.0.0.1"),
                                   NodeService(id=service, service=service, port=port)))


def imported(twin: RaftTwin, peer: str) -> dict[str, list[str]]:
    return {s.service: [csn.node.node for csn in s.nodes] for s in twin.state.peering_imported(peer)[1]}


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def side(twin: RaftTwin, peering: Peering, timeout: float = 5.0) -> StreamHub:
    twin.apply_now(PeeringWrite(peering))
    tracker = StreamTracker(timeout=timeout)
    tracker.restart()
    return StreamHub(state=twin.state, raft=twin, watches=twin.watches, tracker=tracker, datacenter="dc")



def test_both_leaders_import_what_the_other_exports_and_follow_changes_then_terminate() -> None:
    async def scenario() -> None:
        acceptor, dialer = RaftTwin(), RaftTwin()
        a_hub = side(acceptor, Peering(id="a-1", name="cluster-02", state=STATE_ACTIVE))
        d_hub = side(dialer, Peering(id="d-1", name="cluster-01", peer_id="a-1", state=STATE_ACTIVE,
                                     peer_server_addresses=("127.0.0.1:1",)))
        register(acceptor, "box1", "socat")
        exports(acceptor, "socat", "cluster-02")
        register(dialer, "web1", "web")
        exports(dialer, "web", "cluster-01")
        to_dialer, to_acceptor = Pipe(), Pipe()
        a_session, d_session = a_hub.open(acceptor.state.peering_get("cluster-02")[1]), d_hub.open(
            dialer.state.peering_get("cluster-01")[1])
        a_run = asyncio.ensure_future(a_session.run(to_acceptor.incoming(), to_dialer.send))
        d_run = asyncio.ensure_future(d_session.run(to_dialer.incoming(), to_acceptor.send))

        await until(lambda: imported(dialer, "cluster-01") == {"socat": ["box1"]}, "socat imported by the dialer")
        await until(lambda: imported(acceptor, "cluster-02") == {"web": ["web1"]}, "web imported by the acceptor")
        assert [m["Type"] for m in to_dialer.sent[:3]] == ["Mesh", SERVICES, HEARTBEAT]
        await until(lambda: d_hub.tracker.status("cluster-01").last_heartbeat is not None, "a heartbeat")
        status = d_hub.tracker.status("cluster-01")
        assert status.last_receive and status.last_send
        assert d_hub.tracker.counters("cluster-01").streams == 1
        assert d_hub.tracker.counters("cluster-01").bytes_received > 0

        # A second instance: one Upsert for that service, no full set again.
        sent_before = len(to_dialer.sent)
        register(acceptor, "box2", "socat", port=81)
        await until(lambda: imported(dialer, "cluster-01") == {"socat": ["box1", "box2"]}, "box2 imported")
        assert {m["Type"] for m in to_dialer.sent[sent_before:]} <= {UPSERT, HEARTBEAT}
        acceptor.apply_now(CatalogDeregister(node="box1"))
        await until(lambda: imported(dialer, "cluster-01") == {"socat": ["box2"]}, "box1 dropped")
        wire = [to_wire(csn) for csn in acceptor.state.health_service_nodes("socat")[1]]
        assert to_dialer.sent[-1] == message(UPSERT, Service="socat", Nodes=wire) or \
            to_dialer.sent[-1]["Type"] == HEARTBEAT
        exports(acceptor, "other", "cluster-02")  # socat no longer exported
        await until(lambda: "socat" not in imported(dialer, "cluster-01"), "socat no longer imported")
        assert message(DELETE, Service="socat") in to_dialer.sent

        # The dialer deletes its peering: Terminated on the stream; the acceptor marks its row.
        terminating = asyncio.ensure_future(d_hub.terminate("cluster-01"))
        await d_run  # ends cleanly after sending Terminated
        d_hub.close(d_session)
        assert await terminating and to_acceptor.sent[-1] == message(TERMINATED)
        await a_run  # a received Terminated ends the stream without error
        a_hub.close(a_session)
        assert acceptor.state.peering_get("cluster-02")[1].state == "TERMINATED"
        assert imported(acceptor, "cluster-02") == {}
        assert not await d_hub.terminate("cluster-01")  # nothing live any more

    run(scenario())


def test_silence_past_the_timeout_and_a_step_down_end_the_stream() -> None:
    async def scenario() -> None:
        twin = RaftTwin()
        hub = side(twin, Peering(id="a-1", name="cluster-02", state=STATE_ACTIVE), timeout=0.3)
        silent, out = Pipe(), Pipe()
        session = hub.open(twin.state.peering_get("cluster-02")[1])
        with pytest.raises(StreamEnded, match="nothing heard from the peer"):
            await session.run(silent.incoming(), out.send)
        assert [m["Type"] for m in out.sent if m["Type"] == HEARTBEAT]  # it kept sending meanwhile
        assert hub.tracker.counters("cluster-02").streams == 0

        session = hub.open(twin.state.peering_get("cluster-02")[1])
        replaced = hub.open(twin.state.peering_get("cluster-02")[1])  # a newer stream wins
        with pytest.raises(StreamEnded, match="replaced by a newer stream"):
            await session.run(silent.incoming(), out.send)
        running = asyncio.ensure_future(replaced.run(silent.incoming(), out.send))
        await asyncio.sleep(0.05)
        hub.stop_all("this server no longer leads")
        with pytest.raises(StreamEnded, match="no longer leads"):
            await running

    run(scenario())


def test_heartbeats_come_often_enough_for_the_peer_s_shorter_timeout() -> None:
    async def scenario() -> None:
        twin = RaftTwin()
        hub = side(twin, Peering(id="a-1", name="cluster-02", state=STATE_ACTIVE), timeout=120.0)
        row = twin.state.peering_get("cluster-02")[1]
        heard, out = Pipe(), Pipe()

        def heartbeats() -> int:
            return sum(m["Type"] == HEARTBEAT for m in out.sent)

        # Announced in the dialer's first message: 1 s -> a heartbeat every 0.25 s, not every 15 s.
        running = asyncio.ensure_future(hub.open(row, peer_timeout=1.0).run(heard.incoming(), out.send))
        await asyncio.sleep(0.9)
        assert heartbeats() >= 3 and out.sent[-1] == message(HEARTBEAT, Timeout=120.0)
        hub.stop_all("done")
        with pytest.raises(StreamEnded):
            await running

        # Announced in a Heartbeat from the acceptor: the dialer's sender is woken and retimed.
        out.sent.clear()
        running = asyncio.ensure_future(hub.open(row).run(heard.incoming(), out.send))
        await asyncio.sleep(0.3)
        assert heartbeats() == 1
        await heard.send(message(HEARTBEAT, Timeout=2.0))
        await asyncio.sleep(0.6)
        assert heartbeats() >= 2
        hub.stop_all("done")
        with pytest.raises(StreamEnded):
            await running

    run(scenario())


def test_the_acceptor_sends_its_server_addresses_and_the_dialer_redials_with_the_new_ones() -> None:
    """peering.md §1.3: the acceptor's servers (its gateways with PeerThroughMeshGateways) go on
    the stream and again on a membership change, so a dialer whose token named servers that have
    since been replaced still finds the cluster."""

    async def scenario() -> None:
        acceptor, dialer = RaftTwin(), RaftTwin()
        acceptor.apply_now(ServerRegister(ServerInfo("s1", "dc", "10.0.0.1:8301", "10.0.0.1:8300", "10.0.0.1:8500")))
        a_hub = side(acceptor, Peering(id="a-1", name="cluster-02", state=STATE_ACTIVE))
        d_hub = side(dialer, Peering(id="d-1", name="cluster-01", peer_id="a-1", state=STATE_ACTIVE,
                                     peer_server_addresses=("127.0.0.1:1",)))
        to_dialer, to_acceptor = Pipe(), Pipe()
        a_session = a_hub.open(acceptor.state.peering_get("cluster-02")[1])
        d_session = d_hub.open(dialer.state.peering_get("cluster-01")[1])
        a_run = asyncio.ensure_future(a_session.run(to_acceptor.incoming(), to_dialer.send))
        d_run = asyncio.ensure_future(d_session.run(to_dialer.incoming(), to_acceptor.send))

        def dialed() -> tuple[str, ...]:
            return dialer.state.peering_get("cluster-01")[1].peer_server_addresses

        await until(lambda: dialed() == ("10.0.0.1:8300",), "the acceptor's server address stored")
        acceptor.apply_now(ServerRegister(ServerInfo("s2", "dc", "10.0.0.2:8301", "10.0.0.2:8300", "10.0.0.2:8500")))
        await until(lambda: dialed() == ("10.0.0.1:8300", "10.0.0.2:8300"), "a new server's address stored")
        assert dialer.state.peering_secrets("d-1") == d_hub.state.peering_secrets("d-1")  # row kept its secret
        assert not [m for m in to_acceptor.sent if m["Type"] == "ServerAddresses"]  # the dialer is never dialed
        for hub, session, running in ((a_hub, a_session, a_run), (d_hub, d_session, d_run)):
            hub.stop_all("test over")
            with pytest.raises(StreamEnded):
                await running
            hub.close(session)

    run(scenario())

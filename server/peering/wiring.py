"""One server's peering parts, built from its configuration: the endpoints, the dialer, the
stream hub and the leader routine that holds the streams (kept here so server/agent.py only
registers them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily

from meshfed.fsm.state import StateStore
from meshfed.rpc.service import Handler
from meshfed.rpc.stream import StreamMethod
from meshfed.server.config.settings import Config
from meshfed.server.endpoints.ports import LeaderStreams, Proposer, Queries, RequestRouter
from meshfed.server.metrics import gauge
from meshfed.server.peering.acceptor import PeeringAcceptor
from meshfed.server.peering.dial import PeerDialer
from meshfed.server.peering.dialing import StreamDialer
from meshfed.server.peering.endpoint import PeeringEndpoint
from meshfed.server.peering.exports import exported_service_names
from meshfed.server.peering.session import StreamHub
from meshfed.server.peering.tracker import StreamTracker
from meshfed.server.requests.watch import WatchHub


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


@dataclass
class Peering:
    endpoint: PeeringEndpoint
    acceptor: PeeringAcceptor
    dialer: PeerDialer
    hub: StreamHub
    state: StateStore
    tracker: StreamTracker

    def handlers(self) -> dict[str, Handler | StreamMethod]:
        return {**self.endpoint.handlers(), **self.acceptor.handlers()}

    def stream_routine(self) -> Callable[[], Awaitable[None]]:
        """The leader's streams: those it dials, and (while it leads) those it accepts. A fresh
        term starts with an empty tracker; a step-down cancels the routine, which stops every
        stream this server holds."""

        async def run() -> None:
            self.tracker.restart()
            try:
                await StreamDialer(hub=self.hub, dialer=self.dialer).run()
            finally:
                self.hub.stop_all("this server no longer leads")
                self.tracker.stop()  # stepped down: stream status lives on the leader only

        return run

    def live_metrics(self) -> Iterator[GaugeMetricFamily]:
        """Per peering: state, imported and exported service counts; on the leader the stream's
        heartbeat age, whether it is connected, its bytes each way and its reconnects."""
        _, peerings = self.state.peering_list()
        for p in peerings:
            labels = {"peer": p.name}
            yield gauge("meshfed_peering_active", "1 while the peering reads ACTIVE", float(self.tracker.state(p.name, p.state) == "ACTIVE"), labels)
            yield gauge("meshfed_peering_imported_services", "Services imported from the peer",
                        len(p.imported_services), labels)
            yield gauge("meshfed_peering_exported_services", "Services exported to the peer",
                        len(exported_service_names(self.state, p.name)), labels)
            if not self.tracker.leading:  # followers hold no streams
                continue
            yield gauge("meshfed_peering_heartbeat_age_seconds",
                        "Seconds since the peer was last heard (leader only; FAILING past the timeout)",
                        self.tracker.heartbeat_age(p.name), labels)
            counters = self.tracker.counters(p.name)
            yield gauge("meshfed_peering_stream_connected", "1 while this leader holds the peering's stream",
                        float(counters.streams > 0), labels)
            yield gauge("meshfed_peering_stream_bytes_sent", "Bytes sent on the peering's streams this term",
                        counters.bytes_sent, labels)
            yield gauge("meshfed_peering_stream_bytes_received", "Bytes received on the peering's streams this term",
                        counters.bytes_received, labels)
            yield gauge("meshfed_peering_stream_reconnects", "Streams of the peering that ended this term",
                        counters.reconnects, labels)


def build_peering(cfg: Config, *, state: StateStore, raft: Proposer, router: RequestRouter,
                  leader_streams: LeaderStreams, queries: Queries, watches: WatchHub) -> Peering:
    tls = cfg.tls
    # Our gRPC port presents a certificate from tls.ca_file: that CA goes in our tokens so a peer
    # can verify us; without TLS the token carries no CA and the peer dials in plaintext.
    ca_pem = _read(tls.ca_file) if tls.enabled else None
    ca_pems = (ca_pem.decode(),) if ca_pem else ()
    tracker = StreamTracker(timeout=cfg.peering_stream_timeout)
    hub = StreamHub(state=state, raft=raft, watches=watches, tracker=tracker, datacenter=cfg.datacenter)
    dialer = PeerDialer(_read(tls.cert_file) if tls.enabled else None, _read(tls.key_file) if tls.enabled else None)
    endpoint = PeeringEndpoint(
        datacenter=cfg.datacenter, server_name=f"server.{cfg.datacenter}.{cfg.domain.rstrip('.')}",
        ca_pems=lambda: ca_pems, state=state, raft=raft, router=router, queries=queries, dialer=dialer, hub=hub,
    )
    acceptor = PeeringAcceptor(state=state, raft=raft, router=router, queries=queries, hub=hub,
                               leader_streams=leader_streams)
    return Peering(endpoint, acceptor, dialer, hub, state, tracker)

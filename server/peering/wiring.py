"""One server's peering parts, built from its configuration: the endpoints, the dialer and the
import round the leader runs (kept here so server/agent.py only registers them)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily

from meshfed.fsm.state import StateStore
from meshfed.replication.loop import Backoff, ReplicationStatus, RoundLoop
from meshfed.rpc.service import Handler
from meshfed.server.config.settings import Config
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.metrics import gauge
from meshfed.server.peering.acceptor import PeeringAcceptor, exported_service_names
from meshfed.server.peering.dial import PeerDialer
from meshfed.server.peering.endpoint import PeeringEndpoint
from meshfed.server.peering.importer import PeeringImporter
from meshfed.server.peering.tracker import StreamTracker

# Import rounds per second: a new exported instance shows on the other side within about this
# period; each round is one small RPC per ACTIVE dialing peering and no Raft write when idle.
IMPORT_RATE = 2.0
IMPORT_BACKOFF = Backoff(base=0.5, cap=30.0, jitter=0.2)


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


@dataclass
class Peering:
    endpoint: PeeringEndpoint
    acceptor: PeeringAcceptor
    importer: PeeringImporter
    dialer: PeerDialer
    state: StateStore
    tracker: StreamTracker
    import_status: ReplicationStatus = field(default_factory=lambda: ReplicationStatus("peering_import"))

    def handlers(self) -> dict[str, Handler]:
        return {**self.endpoint.handlers(), **self.acceptor.handlers()}

    def import_routine(self) -> Callable[[], Awaitable[None]]:
        """A fresh loop per leadership term (the routine is cancelled on step-down)."""

        async def run() -> None:
            self.tracker.restart()
            loop = RoundLoop("peering_import", self.importer.round, label="peering import",
                             backoff=IMPORT_BACKOFF, rate=IMPORT_RATE, burst=1)
            self.import_status = loop.status
            try:
                await loop.run()
            finally:
                self.tracker.stop()  # stepped down: stream status lives on the leader only

        return run

    def live_metrics(self) -> Iterator[GaugeMetricFamily]:
        """Per peering: state, imported and exported service counts; the import loop's health."""
        _, peerings = self.state.peering_list()
        for p in peerings:
            labels = {"peer": p.name}
            yield gauge("meshfed_peering_active", "1 while the peering reads ACTIVE", float(self.tracker.state(p.name, p.state) == "ACTIVE"), labels)
            yield gauge("meshfed_peering_imported_services", "Services imported from the peer",
                        len(p.imported_services), labels)
            exported = [] if p.is_dialer else exported_service_names(self.state, p.name)
            yield gauge("meshfed_peering_exported_services", "Services exported to the peer", len(exported), labels)
            if self.tracker.leading:  # followers hear nothing from peers
                yield gauge("meshfed_peering_heartbeat_age_seconds",
                            "Seconds since the peer was last heard (leader only; FAILING past the timeout)",
                            self.tracker.heartbeat_age(p.name), labels)
        status = self.import_status
        yield gauge("meshfed_peering_import_failures", "Consecutive failed import rounds (leader only)",
                    status.consecutive_failures)
        yield gauge("meshfed_peering_import_lag_seconds", "Seconds since the last good import round (leader only)",
                    status.lag_seconds(time.time()))


def build_peering(cfg: Config, *, state: StateStore, raft: Proposer, router: RequestRouter,
                  queries: Queries) -> Peering:
    tls = cfg.tls
    # Our gRPC port presents a certificate from tls.ca_file: that CA goes in our tokens so a peer
    # can verify us; without TLS the token carries no CA and the peer dials in plaintext.
    ca_pem = _read(tls.ca_file) if tls.enabled else None
    ca_pems = (ca_pem.decode(),) if ca_pem else ()
    tracker = StreamTracker(timeout=cfg.peering_stream_timeout)
    dialer = PeerDialer(_read(tls.cert_file) if tls.enabled else None, _read(tls.key_file) if tls.enabled else None)
    endpoint = PeeringEndpoint(
        datacenter=cfg.datacenter, server_name=f"server.{cfg.datacenter}.{cfg.domain.rstrip('.')}",
        ca_pems=lambda: ca_pems, state=state, raft=raft, router=router, queries=queries, dialer=dialer,
        tracker=tracker,
    )
    acceptor = PeeringAcceptor(state=state, raft=raft, router=router, queries=queries, datacenter=cfg.datacenter,
                               tracker=tracker)
    importer = PeeringImporter(state=state, raft=raft, dialer=dialer, datacenter=cfg.datacenter, tracker=tracker)
    return Peering(endpoint, acceptor, importer, dialer, state, tracker)

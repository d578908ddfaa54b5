"""One server's peering parts, built from its configuration: the endpoints, the dialer and the
import round the leader runs (kept here so server/agent.py only registers them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meshfed.fsm.state import StateStore
from meshfed.replication.loop import Backoff, RoundLoop
from meshfed.rpc.service import Handler
from meshfed.server.config.settings import Config
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.peering.acceptor import PeeringAcceptor
from meshfed.server.peering.dial import PeerDialer
from meshfed.server.peering.endpoint import PeeringEndpoint
from meshfed.server.peering.importer import PeeringImporter

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

    def handlers(self) -> dict[str, Handler]:
        return {**self.endpoint.handlers(), **self.acceptor.handlers()}

    def import_routine(self) -> Callable[[], Awaitable[None]]:
        """A fresh loop per leadership term (the routine is cancelled on step-down)."""
        return lambda: RoundLoop("peering_import", self.importer.round, label="peering import",
                                 backoff=IMPORT_BACKOFF, rate=IMPORT_RATE, burst=1).run()


def build_peering(cfg: Config, *, state: StateStore, raft: Proposer, router: RequestRouter,
                  queries: Queries) -> Peering:
    tls = cfg.tls
    # Our gRPC port presents a certificate from tls.ca_file: that CA goes in our tokens so a peer
    # can verify us; without TLS the token carries no CA and the peer dials in plaintext.
    ca_pem = _read(tls.ca_file) if tls.enabled else None
    ca_pems = (ca_pem.decode(),) if ca_pem else ()
    dialer = PeerDialer(_read(tls.cert_file) if tls.enabled else None, _read(tls.key_file) if tls.enabled else None)
    endpoint = PeeringEndpoint(
        datacenter=cfg.datacenter, server_name=f"server.{cfg.datacenter}.{cfg.domain.rstrip('.')}",
        ca_pems=lambda: ca_pems, state=state, raft=raft, router=router, queries=queries, dialer=dialer,
    )
    acceptor = PeeringAcceptor(state=state, raft=raft, router=router, queries=queries)
    return Peering(endpoint, acceptor, PeeringImporter(state=state, raft=raft, dialer=dialer), dialer)

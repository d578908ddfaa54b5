"""The acceptor's peer-facing RPCs: ExchangeSecret (connect-data.md §D.3) and ExportedServices.

These are called by another cluster's leader, which holds no ACL token of ours: the secret is
the authentication. The establishment secret is spent once (in the FSM, compared in constant
time there); every later call must present the stream secret it bought. ExportedServices stands
in for the peerstream's ExportedService resources (peering.md §1.3): the dialer's leader polls it
in a replication round (importer.py) instead of holding a bidirectional stream. The poll carries
the dialer's mesh description (its CA roots, trust domain, gateways: mesh.py) and the answer
ours, so each side learns the other's trust bundle; it is served by our leader, which records
the exchange as a heartbeat in its stream tracker and stores a changed bundle through Raft.
"""

from __future__ import annotations

import dataclasses
import hmac
import uuid
from typing import Any

import grpc

from meshfed.fsm.config_entries.schema import KIND_EXPORTED_SERVICES
from meshfed.fsm.peering.commands import PeeringExchangeSecret, PeeringTrustBundleWrite, PeeringWrite
from meshfed.fsm.peering.records import STATE_DELETING, STATE_TERMINATED, Peering
from meshfed.fsm.records import to_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid, not_found
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import propose
from meshfed.server.peering.exports import exported_to
from meshfed.server.peering.mesh import local_mesh, peer_bundle
from meshfed.server.peering.tracker import StreamTracker

EXPORTED_SERVICES_NAME = "default"


def exported_service_names(state: StateStore, peer_name: str) -> list[str]:
    """What the local `exported-services` entry offers to the peering named `peer_name` here."""
    _, entry = state.config_entry_get(KIND_EXPORTED_SERVICES, EXPORTED_SERVICES_NAME)
    _, services = state.catalog_services()
    return exported_to(entry.body if entry is not None else None, peer_name, services)


def _denied(message: str = "invalid peering stream secret") -> RPCError:
    return RPCError(grpc.StatusCode.PERMISSION_DENIED, message)


class PeeringAcceptor:
    def __init__(self, *, state: StateStore, raft: Proposer, router: RequestRouter, queries: Queries,
                 datacenter: str = "", tracker: StreamTracker | None = None) -> None:
        self._dc = datacenter
        self._tracker = tracker or StreamTracker()
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries

    def handlers(self) -> dict[str, Handler]:
        return {
            "Peering/ExchangeSecret": self.exchange_secret,
            "Peering/ExportedServices": self.exported_services,
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
        header = RequestHeader(request_id=header.request_id or uuid.uuid4().hex, hops=header.hops)

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
        header = RequestHeader(request_id=header.request_id or uuid.uuid4().hex, hops=header.hops)

        async def local() -> tuple[QueryMeta, Any]:
            peering = self._authenticated(body)  # again on the leader, which holds the truth
            await propose(self._raft, header.request_id,
                          PeeringWrite(dataclasses.replace(peering, state=STATE_TERMINATED)))
            return self._queries.meta(self._state.index("peerings")), {}

        return await self._router.serve("Peering/Terminate", header, body, local, write=True)

    async def exported_services(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """{PeerID, StreamSecret, Mesh} -> {"Services": {name: [CheckServiceNode wire]}, "Mesh"}:
        answered by our leader, the one server that tracks the stream and may write the bundle."""
        self._authenticated(body)  # refuse a bad secret without a hop to the leader
        header = RequestHeader(request_id=header.request_id or uuid.uuid4().hex, hops=header.hops)

        async def local() -> tuple[QueryMeta, Any]:
            peering = self._authenticated(body)
            self._tracker.received(peering.name)
            try:
                bundle = peer_bundle(peering.name, body.get("Mesh"))
            except ValueError as exc:
                raise invalid(str(exc)) from None
            if bundle is not None and not bundle.same_content(self._state.peering_trust_bundle(peering.name)):
                await propose(self._raft, "", PeeringTrustBundleWrite(bundle))
            services: dict[str, Any] = {}
            for name in exported_service_names(self._state, peering.name):
                _, nodes = self._state.health_service_nodes(name)
                services[name] = [to_wire(csn) for csn in nodes]
            index = self._state.index("nodes", "services", "checks", "config_entries")
            self._tracker.sent(peering.name)
            return self._queries.meta(index), {
                "Services": services, "Datacenter": self._dc, "Mesh": local_mesh(self._state, self._dc, peering.name)}

        return await self._router.serve("Peering/ExportedServices", header, body, local, write=True)

"""The dialer's leader imports what each peer exports to it: one replication round per pass over
the ACTIVE dialing peerings, on the shared `RoundLoop` (pacing, backoff, status, logging).

A round asks each peer's servers for its exported services (authenticated by the stream secret,
TLS verified against the peer's CA from the token) and proposes a `PeeringImportSet` only when
the answer differs from what is stored, so an idle peering costs no Raft writes. The call
carries our mesh description (CA roots, trust domain, gateways) and the answer the peer's, stored
as the peering's trust bundle when it changed; each round counts as a heartbeat both ways. A peer that no
longer knows us (it deleted the peering) moves ours to TERMINATED, which drops the imports
(peering.md §5); the row stays until deleted here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import grpc

from meshfed.fsm.peering.commands import PeeringImportSet, PeeringTrustBundleWrite, PeeringWrite
from meshfed.fsm.peering.records import STATE_ACTIVE, STATE_TERMINATED, ImportedService, Peering
from meshfed.fsm.records import csn_from_wire
from meshfed.fsm.state import StateStore
from meshfed.replication.loop import ReplicationStatus
from meshfed.rpc.errors import RPCError
from meshfed.server.endpoints.ports import Proposer
from meshfed.server.endpoints.writes import propose
from meshfed.server.peering.dial import PeerDialer
from meshfed.server.peering.mesh import dial_addresses, local_mesh, peer_bundle
from meshfed.server.peering.tracker import StreamTracker

log = logging.getLogger(__name__)


def imported_services(peer_name: str, answer: Any) -> tuple[ImportedService, ...]:
    """The peer's ExportedServices answer as records; raises ValueError on a malformed answer."""
    services = answer.get("Services") if isinstance(answer, dict) else None
    if not isinstance(services, dict):
        raise ValueError("peer answered ExportedServices without a Services map")
    return tuple(
        ImportedService(peer_name, name, tuple(csn_from_wire(n) for n in nodes))
        for name, nodes in sorted(services.items())
    )


class PeeringImporter:
    def __init__(self, *, state: StateStore, raft: Proposer, dialer: PeerDialer, datacenter: str = "",
                 tracker: StreamTracker | None = None) -> None:
        self._dc = datacenter
        self._tracker = tracker or StreamTracker()
        self._state = state
        self._raft = raft
        self._dialer = dialer

    async def round(self, status: ReplicationStatus) -> int:
        """One pass over the dialing peerings; raises (for the loop's backoff) if any failed,
        after trying all of them, so one unreachable peer does not starve the others."""
        failures = []
        _, peerings = self._state.peering_list()
        for peering in peerings:
            if not peering.is_dialer or peering.state != STATE_ACTIVE:
                continue
            try:
                await self._import(peering)
            except (RPCError, ValueError, KeyError, TypeError) as exc:
                failures.append(f"{peering.name}: {exc}")
        if failures:
            raise RuntimeError("; ".join(failures))
        return self._state.index("peering_imports")

    async def _import(self, peering: Peering) -> None:
        secrets = self._state.peering_secrets(peering.id)
        if secrets is None or not secrets.stream:
            return
        try:
            self._tracker.sent(peering.name)
            _, answer = await self._dialer.call(
                dial_addresses(self._state, peering), peering.peer_ca_pems,
                peering.peer_server_name, "Peering/ExportedServices",
                {"PeerID": peering.peer_id, "StreamSecret": secrets.stream,
                 "Mesh": local_mesh(self._state, self._dc, peering.name)},
            )
            self._tracker.received(peering.name)
        except RPCError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                self._tracker.forget(peering.name)
                log.info("peer of peering %s no longer knows it: marking it %s", peering.name, STATE_TERMINATED)
                await propose(self._raft, "", PeeringWrite(dataclasses.replace(peering, state=STATE_TERMINATED)))
                return
            raise
        bundle = peer_bundle(peering.name, answer.get("Mesh") if isinstance(answer, dict) else None)
        if bundle is not None and not bundle.same_content(self._state.peering_trust_bundle(peering.name)):
            await propose(self._raft, "", PeeringTrustBundleWrite(bundle))
        incoming = imported_services(peering.name, answer)
        _, stored = self._state.peering_imported(peering.name)
        if [(s.service, s.nodes) for s in stored] != [(s.service, s.nodes) for s in incoming]:
            await propose(self._raft, "", PeeringImportSet(peering.name, incoming))

"""Peering/* RPC endpoints (reference connect-data.md §D.1-§D.5, peering.md §1.2).

Operator-facing (called through the HTTP API, forwarded to the leader like every write):
GenerateToken, Establish, Read, List, Delete. Peer-facing (called by another cluster's leader,
authenticated by a secret, never by an ACL token): ExchangeSecret, the stream and Terminate,
in acceptor.py. The leader does the dialing, so a dial never depends on which server the operator
happened to ask.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from meshfed.fsm.consul_formats.timestamps import format_rfc3339
from meshfed.fsm.peering.commands import PEER_NAME, PEER_NAME_ERROR, PeeringDelete, PeeringWrite
from meshfed.fsm.peering.records import STATE_ACTIVE, STATE_PENDING, STATE_TERMINATED, Peering
from meshfed.fsm.records import to_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid
from meshfed.rpc.header import QueryMeta, RequestHeader, new_request_id
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import propose
from meshfed.server.peering.dial import PeerDialer
from meshfed.server.peering.exports import exported_service_names
from meshfed.server.peering.mesh import advertised_addresses, dial_addresses, peer_through_mesh_gateways
from meshfed.server.peering.session import StreamHub
from meshfed.server.peering.token import PeeringToken, TokenError, decode_token, encode_token

TABLES = ("peerings", "peering_imports", "peering_trust_bundles")

log = logging.getLogger(__name__)


def _now() -> str:
    return format_rfc3339(dt.datetime.now(dt.UTC))


def _text(body: Any, key: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if value is not None and not isinstance(value, str):
        raise invalid(f"{key}: expected a string")
    return value or ""


def _meta(body: Any) -> dict[str, str]:
    meta = body.get("Meta") if isinstance(body, dict) else None
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise invalid("Meta: expected a map of strings")
    return dict(meta)


def _check_name(name: str) -> None:
    if not PEER_NAME.match(name):
        raise invalid(f"{name} {PEER_NAME_ERROR}")


class PeeringEndpoint:
    def __init__(
        self,
        *,
        datacenter: str,
        server_name: str,
        ca_pems: Callable[[], tuple[str, ...]],
        state: StateStore,
        raft: Proposer,
        router: RequestRouter,
        queries: Queries,
        dialer: PeerDialer,
        hub: StreamHub,
    ) -> None:
        self._hub = hub
        self._tracker = hub.tracker
        self._dc = datacenter
        self._server_name = server_name  # the name our gRPC certificate answers to
        self._ca_pems = ca_pems  # the CA a peer verifies our gRPC port against ("" without TLS)
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries
        self._dialer = dialer

    def handlers(self) -> dict[str, Handler]:
        return {
            "Peering/GenerateToken": self.generate_token,
            "Peering/Establish": self.establish,
            "Peering/Read": self.read,
            "Peering/List": self.list,
            "Peering/Delete": self.delete,
        }

    # ---- acceptor: GenerateToken (§D.1) --------------------------------------------------------

    async def generate_token(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        name = _text(body, "PeerName")
        if not name:
            raise invalid("PeerName is required in the payload when generating a new peering token.")
        _check_name(name)
        meta = _meta(body)
        external = body.get("ServerExternalAddresses") or []
        if not isinstance(external, list) or not all(isinstance(a, str) for a in external):
            raise invalid("ServerExternalAddresses: expected a list of strings")

        async def local() -> tuple[QueryMeta, Any]:
            _, existing = self._state.peering_get(name)
            if existing is not None and existing.is_dialer:
                raise invalid(f'cannot create peering with name: "{name}"; there is already an established peering')
            # With PeerThroughMeshGateways the dialer reaches our servers only through our
            # gateways, which route the server name in the token (an SNI, TLS end to end) to a
            # local server. Checked before the secret is written: a refused token changes nothing.
            addresses = advertised_addresses(self._state)
            if not addresses and peer_through_mesh_gateways(self._state):
                raise invalid("mesh entry has Peering.PeerThroughMeshGateways but no healthy mesh gateway is "
                              "registered: start one before generating a token")
            if not addresses:
                raise invalid("a grpc bind port must be specified in the configuration for all servers")
            row = existing or Peering(id=str(uuid.uuid4()), name=name, meta=meta, created_at=_now())
            if row.state == STATE_TERMINATED:
                # The dialer deleted its side; a new token starts the same row over.
                row = dataclasses.replace(row, state=STATE_PENDING)
            result = await propose(self._raft, header.request_id,
                                   PeeringWrite(row, establishment_secret=str(uuid.uuid4())))
            secret = result.value["establishment_secret"]
            token = PeeringToken(
                ca=self._ca_pems(), server_addresses=addresses, manual_server_addresses=tuple(external),
                server_name=self._server_name, peer_id=row.id, establishment_secret=secret,
                remote={"Partition": "default", "Datacenter": self._dc, "Locality": None},
            )
            return self._queries.meta(self._state.index(*TABLES)), {"PeeringToken": encode_token(token)}

        header = dataclasses.replace(header, request_id=header.request_id or new_request_id())
        return await self._router.serve("Peering/GenerateToken", header, body, local, write=True)

    # ---- dialer: Establish (§D.2) ----------------------------------------------------------------

    async def establish(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        name = _text(body, "PeerName")
        if not name:
            raise invalid("PeerName is required in the payload when establishing a peering.")
        _check_name(name)
        text = _text(body, "PeeringToken")
        if not text:
            raise invalid("PeeringToken is required in the payload when establishing a peering.")
        try:
            token = decode_token(text)
        except TokenError as exc:
            raise invalid(f"PeeringToken: {exc}") from None
        meta = _meta(body)

        async def local() -> tuple[QueryMeta, Any]:
            own = self._state.peering_by_id(token.peer_id)
            if own is not None and not own.is_dialer:
                raise invalid("cannot create a peering within the same cluster: the token was generated here")
            _, existing = self._state.peering_get(name)
            if existing is not None and not existing.is_dialer:
                raise invalid(f'cannot create peering with name: "{name}"; there is an existing peering '
                              "expecting to be dialed")
            row = Peering(
                id=existing.id if existing is not None else str(uuid.uuid4()), name=name,
                peer_id=token.peer_id, peer_ca_pems=token.ca, peer_server_name=token.server_name,
                peer_server_addresses=token.server_addresses, manual_server_addresses=token.manual_server_addresses,
                meta=meta, remote_datacenter=str(token.remote.get("Datacenter") or ""),
                created_at=_now(),
            )
            await propose(self._raft, header.request_id, PeeringWrite(row))
            stream_secret = await self._exchange(token)
            await propose(self._raft, "", PeeringWrite(dataclasses.replace(row, state=STATE_ACTIVE),
                                                       stream_secret=stream_secret))
            return self._queries.meta(self._state.index(*TABLES)), {}

        return await self._router.serve("Peering/Establish", header, body, local, write=True)

    async def _exchange(self, token: PeeringToken) -> str:
        try:
            _, answer = await self._dialer.call(
                token.dial_addresses, token.ca, token.server_name, "Peering/ExchangeSecret",
                {"PeerID": token.peer_id, "EstablishmentSecret": token.establishment_secret},
            )
        except RPCError as exc:
            if exc.code == grpc.StatusCode.PERMISSION_DENIED:
                raise RPCError(grpc.StatusCode.PERMISSION_DENIED,
                               "a new peering token must be generated: invalid peering establishment secret") from None
            raise
        secret = answer.get("StreamSecret") if isinstance(answer, dict) else None
        if not isinstance(secret, str) or not secret:
            raise RPCError(grpc.StatusCode.INTERNAL, "the peer answered the secret exchange without a stream secret")
        return secret

    async def _tell_peer_terminated(self, row: Peering) -> None:
        """Best effort, as Consul's Terminated message is: on the live stream when one is
        connected here, else (a dialer) by a Terminate call. A dialer we cannot tell learns it
        when it redials (NotFound); an acceptor we cannot reach keeps a stale row."""
        if await self._hub.terminate(row.name) or not row.is_dialer:
            return
        secrets = self._state.peering_secrets(row.id)
        if secrets is None or not secrets.stream:
            return
        try:
            await self._dialer.call(dial_addresses(self._state, row, datacenter=self._dc), row.peer_ca_pems,
                                    row.peer_server_name, "Peering/Terminate",
                                    {"PeerID": row.peer_id, "StreamSecret": secrets.stream})
        except RPCError as exc:
            log.warning("peering %s deleted here, but the peer was not told: %s", row.name, exc)

    # ---- reads and delete (§D.5) -------------------------------------------------------------------

    def _view(self, peering: Peering) -> dict[str, Any]:
        """The row's wire form plus what this side exports to the peer now, the
        peer's trust bundle (its Connect roots join `PeerCAPems`; an acceptor learns the dialer's
        gateways as `PeerServerAddresses`, where Consul's peering-through-gateways puts them) and
        the stream status this server's tracker holds (the leader's is the one that is fed)."""
        wire = to_wire(peering)
        wire["exported_services"] = exported_service_names(self._state, peering.name)
        bundle = self._state.peering_trust_bundle(peering.name)
        if bundle is not None:
            wire["peer_ca_pems"] = list(dict.fromkeys([*peering.peer_ca_pems, *bundle.root_pems]))
            if not wire["peer_server_addresses"]:
                wire["peer_server_addresses"] = list(bundle.gateway_addresses)
            wire["peer_trust_domain"] = bundle.trust_domain
        status = self._tracker.status(peering.name)
        wire["state"] = self._tracker.state(peering.name, peering.state)
        wire["stream"] = {key: None if value is None else format_rfc3339(dt.datetime.fromtimestamp(value, dt.UTC))
                          for key, value in status.__dict__.items()}
        return wire

    async def read(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        name = _text(body, "Name")
        if not name:
            raise invalid("Must specify a name to fetch.")

        async def local() -> tuple[QueryMeta, Any]:
            meta, row = await self._queries.run(header, TABLES, lambda: self._state.peering_get(name))
            return meta, {"peering": None if row is None else self._view(row)}

        return await self._router.serve("Peering/Read", header, body, local, write=False)

    async def list(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            meta, rows = await self._queries.run(header, TABLES, self._state.peering_list)
            return meta, [self._view(row) for row in rows]

        return await self._router.serve("Peering/List", header, body, local, write=False)

    async def delete(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        name = _text(body, "Name")
        if not name:
            raise invalid("Must specify a name to delete.")

        async def local() -> tuple[QueryMeta, Any]:
            _, row = self._state.peering_get(name)
            if row is not None and row.state == STATE_ACTIVE:
                await self._tell_peer_terminated(row)
            await propose(self._raft, header.request_id, PeeringDelete(name))
            return self._queries.meta(self._state.index(*TABLES)), {}

        return await self._router.serve("Peering/Delete", header, body, local, write=True)

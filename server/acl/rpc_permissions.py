"""What each state-changing RPC method needs, checked on the server that receives the call.

A follower forwarding a write passes the caller's token in `RequestHeader.token`; the leader
resolves it and checks it here before the endpoint runs, so a write is judged by the caller's
token and never by the forwarding server's own privileges. The needs come from `needs.py`, the
same functions the HTTP table uses, applied to the RPC body's wire form.

Catalog and health reads are not listed: list reads are filtered at the HTTP door
(`permissions.py`), and the servers' own replication and status reads travel without a caller.
Reads that could hand out secrets or policy (ACL state, the CA configuration) are listed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc
from cryptography import x509

from meshfed.fsm.acl import Access
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.records import check_from_wire, node_from_wire, service_from_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid
from meshfed.rpc.header import RequestHeader
from meshfed.rpc.spiffe import SpiffeError, parse_service_uri
from meshfed.server.acl.filters import keeps_everything
from meshfed.server.acl.needs import (
    Need,
    config_entry_write,
    deregistration_of,
    enforce,
    intention,
    intention_destination,
    operator,
    registration_of,
    ttl_update_of,
)
from meshfed.server.acl.resolver import ACLResolver, Identity, state_reader
from meshfed.server.acl.rpc_filters import RPC_READ_FILTERS
from meshfed.server.config.settings import Config
from meshfed.server.metrics import Metrics

RPCNeedsOf = Callable[[StateStore, Mapping[str, Any]], list[Need]]


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""


def _register(state: StateStore, body: Mapping[str, Any]) -> list[Need]:
    node = node_from_wire(body.get("node") or {})
    raw_service = body.get("service")
    service = service_from_wire(raw_service) if isinstance(raw_service, dict) else None
    checks = [check_from_wire(raw) for raw in body.get("checks") or ()]
    return registration_of(state, node, service, checks)


def _deregister(state: StateStore, body: Mapping[str, Any]) -> list[Need]:
    return deregistration_of(state, _text(body, "node"), _text(body, "service_id"), _text(body, "check_id"))


def _config_entry_apply(state: StateStore, body: Mapping[str, Any]) -> list[Need]:
    entry = body.get("entry")
    kind = lookup(entry, "Kind") if isinstance(entry, Mapping) else None
    name = lookup(entry, "Name") if isinstance(entry, Mapping) else None
    return config_entry_write(kind if isinstance(kind, str) else "", name if isinstance(name, str) else "")


def _intention_apply(state: StateStore, body: Mapping[str, Any]) -> list[Need]:
    """Every destination the write touches: the named one, the new one, and the one an ID holds."""
    destinations = [_text(body, "destination")]
    written = body.get("intention")
    if isinstance(written, Mapping):
        new_destination = lookup(written, "DestinationName")
        destinations.append(new_destination if isinstance(new_destination, str) else "")
    if _text(body, "id"):
        destinations.append(intention_destination(state, _text(body, "id")) or "")
    named = [name for name in destinations if name]
    # A write that names no destination is refused by the endpoint; demand the most a write can need.
    return [need for name in named for need in intention(name, Access.WRITE)] or [Need("intention", Access.WRITE, "")]


def _leaf_sign(state: StateStore, body: Mapping[str, Any]) -> list[Need]:
    """service:write on the service the CSR names; an unreadable CSR demands the most (the
    endpoint then refuses it with the precise reason)."""
    try:
        csr = x509.load_pem_x509_csr(_text(body, "csr").encode())
        uris = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
        service = parse_service_uri(uris[0]).service if len(uris) == 1 else ""
    except (ValueError, x509.ExtensionNotFound, SpiffeError):
        service = ""
    return [Need("service", Access.WRITE, service)] if service else operator(Access.WRITE)


def _register_many(state: StateStore, body: Mapping[str, Any]) -> list[Need]:
    rows = body.get("registrations")
    return [need for row in (rows if isinstance(rows, list) else []) if isinstance(row, Mapping)
            for need in _register(state, row)]


def _deregister_many(state: StateStore, body: Mapping[str, Any]) -> list[Need]:
    ids = body.get("service_ids")
    return [need for service_id in (ids if isinstance(ids, list) else [])
            for need in deregistration_of(state, _text(body, "node"), str(service_id), "")]


def _intention_match(state: StateStore, body: Mapping[str, Any]) -> list[Need]:
    """intention:read on every name matched, as HTTP's /v1/connect/intentions/match asks."""
    names = body.get("names")
    return [need for name in (names if isinstance(names, list) else []) if isinstance(name, str)
            for need in intention(name, Access.READ)]


RPC_METHODS: dict[str, RPCNeedsOf] = {
    "Catalog/Register": _register,
    "Catalog/Deregister": _deregister,
    "Catalog/RegisterMany": _register_many,
    "Catalog/DeregisterMany": _deregister_many,
    "Health/UpdateTTL": lambda state, body: ttl_update_of(state, _text(body, "check_id"), _text(body, "node")),
    "ConfigEntry/Apply": _config_entry_apply,
    "ConfigEntry/Delete": lambda state, body: config_entry_write(_text(body, "kind"), _text(body, "name")),
    "ConnectCA/SetConfiguration": lambda state, body: operator(Access.WRITE),
    "ConnectCA/SignIntermediate": lambda state, body: operator(Access.WRITE),
    "ConnectCA/Sign": _leaf_sign,
    "FederationState/Apply": lambda state, body: operator(Access.WRITE),
    # The replicators' delta read (issue #13): operator:read, as Consul asks for FederationState.List
    # and the replication token's recommended rules grant. Not server-only: List is not either, and
    # a new secondary must be able to sync before the primary holds its federation state. The
    # index-only form is a follower's read barrier for mesh-gateway reads (which any token may
    # make, filtered): it reveals an index and no record, so it needs nothing.
    "FederationState/ListSince": lambda state, body: [] if body.get("index_only") is True else operator(Access.READ),
    # Consul's FederationState.Get and .List (reference/federation.md §3.2-3.3): the replication
    # token's recommended rules grant it. ListMeshGateways is filtered instead (rpc_filters.py).
    "FederationState/Get": lambda state, body: operator(Access.READ),
    "FederationState/List": lambda state, body: operator(Access.READ),
    "Operator/RaftTransferLeader": lambda state, body: operator(Access.WRITE),
    "Operator/RaftRemovePeer": lambda state, body: operator(Access.WRITE),
    "Operator/AutopilotSetConfiguration": lambda state, body: operator(Access.WRITE),
    "Intention/Apply": _intention_apply,
    # Forwarded operator calls; the peer-facing Peering/ExchangeSecret, /StreamResources and
    # /Terminate are authenticated by the peering's secrets, not by a token of ours (server/peering/acceptor.py).
    "Peering/GenerateToken": lambda state, body: [Need("peering", Access.WRITE)],
    "Peering/Establish": lambda state, body: [Need("peering", Access.WRITE)],
    "Peering/Delete": lambda state, body: [Need("peering", Access.WRITE)],
    # Reads as HTTP's GET /v1/peering(s): peers' names, addresses and CA roots need peering:read.
    "Peering/Read": lambda state, body: [Need("peering", Access.READ)],
    "Peering/List": lambda state, body: [Need("peering", Access.READ)],
    # Reads of ACL state and of the CA configuration are checked here too, not only at the HTTP
    # door: a caller with nothing but a CA-signed client certificate can reach the gRPC port.
    **{method: (lambda state, body: [Need("acl", Access.READ)])
       for method in ("ACL/TokenRead", "ACL/TokenList", "ACL/PolicyRead", "ACL/PolicyList", "ACL/RoleRead",
                      "ACL/RoleList")},
    "ConnectCA/GetConfiguration": lambda state, body: operator(Access.READ),
    # ACL objects change only with acl:write, as over HTTP. Without these entries a call with no
    # token could create a policy and a global-management token on the RPC port.
    **{method: (lambda state, body: [Need("acl", Access.WRITE)])
       for method in ("ACL/PolicySet", "ACL/PolicyDelete", "ACL/RoleSet", "ACL/RoleDelete", "ACL/TokenSet",
                      "ACL/TokenDelete", "ACL/TokenClone")},
    # Reads whose HTTP routes ask a permission outright ask the same here.
    "Operator/AutopilotGetConfiguration": lambda state, body: operator(Access.READ),
    "Federation/Check": lambda state, body: operator(Access.READ),
    "Intention/Check": lambda state, body: intention(_text(body, "destination"), Access.READ),
    "Intention/Match": _intention_match,
    "Intention/Authorize": lambda state, body: [Need("service", Access.WRITE, _text(body, "target"))],
    "Catalog/GatewayServices": lambda state, body: [Need("service", Access.READ, _text(body, "gateway"))],
    # The secondary leader's replication reads (reference/acl.md §6.3): acl:read, and the endpoint
    # reveals token secrets only to acl:write. Only servers may call them (server/acl/peers.py).
    "ACL/PolicyReplicate": lambda state, body: [Need("acl", Access.READ)],
    "ACL/RoleReplicate": lambda state, body: [Need("acl", Access.READ)],
    "ACL/TokenReplicate": lambda state, body: [Need("acl", Access.READ)],
}


# Methods that ask no permission, and why; as HTTP's EXEMPT (server/acl/permissions.py), each
# entry is a hole by design. A method in none of RPC_METHODS, RPC_READ_FILTERS and this table is
# refused: a new method must be declared before a caller with no token can reach it.
RPC_EXEMPT: dict[str, str] = {
    "Status/Leader": "Consul serves cluster status to anyone",
    "Status/Peers": "Consul serves cluster status to anyone",
    "Status/Ping": "a liveness probe",
    "Status/Time": "the federation self-check's clock probe of another datacenter",
    "Status/LogCommands": "the command tags this build applies; a new leader asks its members, with no token",
    "Status/RaftConfiguration": "servers' names and Raft addresses, as Status/Peers; the HTTP route asks "
                                "operator:read at its door, and the agent's member list reads it with no token",
    "ConnectCA/Roots": "trust anchors are public: every proxy fetches them",
    "ConfigEntry/MeshGatewayMode": "as its HTTP route: proxy-defaults' gateway mode, whose reads need nothing",
    "ACL/Bootstrap": "allowed once with no token at all; afterwards refused with the reset index",
    "ACL/TokenSelf": "the caller's own token: an unknown secret is 'ACL not found'",
    "ACL/ReplicationStatus": "indexes, times and errors of ACL replication, no ACL data (Consul asks nothing)",
    "Peering/ExchangeSecret": "authenticated by the peering's establishment secret (server/peering/acceptor.py)",
    "Peering/Terminate": "authenticated by the peering's stream secret",
    "Peering/StreamResources": "authenticated by the peering's stream secret",
}
ERR_UNDECLARED = "Permission denied: this method declares no permission and is refused"


class RPCAuthorizer:
    """The hook the gRPC service calls before a handler (`RPCService(authorize=...)`)."""

    def __init__(self, resolver: ACLResolver, state: StateStore,
                 on_denied: Callable[[str], None] | None = None) -> None:
        self._resolver = resolver
        self._state = state
        self._on_denied = on_denied

    def __call__(self, method: str, header: RequestHeader, body: Any) -> None:
        """Raises RPCError PERMISSION_DENIED (Consul's text) or `ACL not found`; returns when allowed."""
        if method in RPC_METHODS:
            self._check(method, self._resolver.resolve(header.token), body)
        elif method not in RPC_READ_FILTERS and method not in RPC_EXEMPT:
            self._refuse_undeclared(method)

    async def authorize(self, method: str, header: RequestHeader, body: Any) -> Callable[[Any], tuple[Any, bool]] | None:
        """`__call__` for the gRPC service: a secondary may have to ask the primary about a token
        it does not hold (and then applies `down_policy`), which takes an await. For a catalog,
        health, intention or config-entry read, the filter of its answer by the caller's token
        (server/acl/rpc_filters.py)."""
        if method in RPC_METHODS:
            self._check(method, await self._resolver.resolve_async(header.token), body)
            return None
        keep = RPC_READ_FILTERS.get(method)
        if keep is None:
            if method not in RPC_EXEMPT:
                self._refuse_undeclared(method)
            return None
        identity = await self._resolver.resolve_async(header.token)
        if keeps_everything(identity, keep):
            return None  # management, or a token that reads every name the filter checks
        return lambda answer: keep(identity, answer)

    def _refuse_undeclared(self, method: str) -> None:
        if self._on_denied is not None:
            self._on_denied(method)
        raise RPCError(grpc.StatusCode.PERMISSION_DENIED, ERR_UNDECLARED)

    def _check(self, method: str, identity: Identity, body: Any) -> None:
        needs_of = RPC_METHODS[method]
        try:
            needs = needs_of(self._state, body if isinstance(body, Mapping) else {})
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise invalid(f"invalid request: {exc}") from None
        on_denied = self._on_denied
        enforce(identity, needs, on_denied=(lambda: on_denied(method)) if on_denied is not None else None)


def rpc_authorizer(config: Config, state: StateStore, metrics: Metrics,
                   resolver: ACLResolver | None = None) -> RPCAuthorizer:
    """The check for this server's gRPC service (install it only when `acl.enabled`). Pass the
    resolver the HTTP side uses, so a server keeps one token cache, not one per door."""
    resolver = resolver or ACLResolver(state_reader(state), config.acl, config.datacenter, observer=metrics)
    return RPCAuthorizer(resolver, state, on_denied=metrics.acl_denied)

"""ConnectCA.* (reference connect-data.md §C): Roots, GetConfiguration, SetConfiguration, SignIntermediate,
and Sign (a service's leaf certificate, reference/mesh-dataplane.md §2.4).

The CA lives in one replicated record (`CAState`: cluster id, configuration, roots). The primary is
its authority: configuration writes are re-targeted there wherever they arrive, and only the
primary signs intermediates, with the private key of its active root. Secondaries hold their own
copy, written by their leader's root watch (`server/ca/secondary.py`), and serve it like the primary.

Errors, as gRPC codes (the HTTP status in brackets):
- the CA has no cluster id yet -> FAILED_PRECONDITION [409] "CA has not finished initializing".
  Consul answers 500; UNAVAILABLE would be the other candidate, but the router treats UNAVAILABLE
  as "no leader" and holds the call for seconds before answering with a misleading message, while
  here the leader is known and simply has not bootstrapped the CA yet. A blocking read does not
  fail: it waits for the CA to appear, as Consul's "nothing yet" reads do.
- SignIntermediate outside the primary -> FAILED_PRECONDITION "not the primary datacenter".
- a refused configuration or CSR -> INVALID_ARGUMENT naming the field.
- Sign over the CSR rate or concurrency limit -> RESOURCE_EXHAUSTED [429] "Rate limit reached, try
  again later".

The record, its per-root indexes and Consul's JSON are `server/ca/roots.py`'s; this module routes,
blocks, validates and proposes.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

import grpc

from meshfed.fsm import CAStateSet
from meshfed.fsm.records import CAState
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, conflict, internal, invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server import ca
from meshfed.server.ca import (
    MAX_CAS_ATTEMPTS,
    Clock,
    active_root,
    config_record,
    is_initialized,
    next_serial,
    roots_for_write,
    served_roots,
    stored_config,
    utc_now,
)
from meshfed.server.ca.csr_gate import RATE_LIMITED, CSRGate
from meshfed.server.ca.leaf import check_leaf_csr, sign_leaf
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import propose

TABLES = ("connect_ca",)
ERR_NOT_INITIALIZED = "CA has not finished initializing"
ERR_NOT_PRIMARY = "not the primary datacenter"


def not_initialized() -> RPCError:
    return conflict(ERR_NOT_INITIALIZED)


def attempt_request_id(base: str, attempt: int) -> str:
    """One request id per proposal attempt. A re-proposal after a lost CAS is a different command
    and must not be answered from the dedupe window; a router retry of the same attempt must be."""
    if not base:
        return uuid.uuid4().hex
    return base if attempt == 0 else f"{base}/{attempt}"


# --------------------------------------------------------------------------------------------------


class ConnectCAEndpoint:
    def __init__(
        self,
        *,
        primary_datacenter: str,
        datacenter: str,
        state: StateStore,
        raft: Proposer,
        router: RequestRouter,
        queries: Queries,
        clock: Clock = utc_now,
    ) -> None:
        self._primary = primary_datacenter
        self._datacenter = datacenter
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries
        self._clock = clock
        self._csr_gate = CSRGate()

    @property
    def is_primary(self) -> bool:
        return self._datacenter.lower() == self._primary.lower()

    def handlers(self) -> dict[str, Handler]:
        return {
            "ConnectCA/Roots": self.roots,
            "ConnectCA/GetConfiguration": self.get_configuration,
            "ConnectCA/SetConfiguration": self.set_configuration,
            "ConnectCA/SignIntermediate": self.sign_intermediate,
            "ConnectCA/Sign": self.sign,
        }

    def _initialized_state(self) -> tuple[int, CAState | None]:
        """The blocking query's view: an uninitialized CA counts as missing, so a blocking read
        waits for the bootstrap instead of failing."""
        index, state = self._state.ca_state()
        return index, state if is_initialized(state) else None

    async def roots(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {} -> {"roots": IndexedCARoots JSON (public fields only)}."""

        async def local() -> tuple[QueryMeta, Any]:
            meta, state = await self._queries.run(header, TABLES, self._initialized_state, wait_for_existence=True)
            if state is None:
                raise not_initialized()
            return meta, {"roots": ca.roots_response(served_roots(state), ca.trust_domain(state.cluster_id))}

        return await self._router.serve("ConnectCA/Roots", header, body, local, write=False)

    async def get_configuration(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {} -> {"config": Consul's CAConfiguration JSON with CreateIndex/ModifyIndex}."""

        async def local() -> tuple[QueryMeta, Any]:
            meta, state = await self._queries.run(header, TABLES, self._initialized_state, wait_for_existence=True)
            if state is None:
                raise not_initialized()
            view = ca.config_view(stored_config(state))
            view["CreateIndex"] = state.create_index
            view["ModifyIndex"] = state.modify_index
            return meta, {"config": view}

        return await self._router.serve("ConnectCA/GetConfiguration", header, body, local, write=False)

    async def set_configuration(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: the PUT /v1/connect/ca/configuration JSON -> True once stored.

        A new key type or size needs a new root: it is generated and made active in the same
        write, the old root stays listed (inactive) until pruning, so leaves it signed keep
        validating (§C.2 step 4, step 7).
        """
        header = dataclasses.replace(header, datacenter=self._primary)
        if not isinstance(body, Mapping):
            raise invalid("Request decode failed: the body must be a JSON object")
        try:
            ca.config_from_request(body, ca.CAConfig())  # shape errors answer here, before routing
        except ca.CAConfigError as exc:
            raise invalid(str(exc)) from None

        async def local() -> tuple[QueryMeta, Any]:
            for attempt in range(MAX_CAS_ATTEMPTS):
                _, state = self._state.ca_state()
                if state is None or not is_initialized(state):
                    raise not_initialized()
                current = stored_config(state)
                try:
                    new_config = ca.config_from_request(body, current)
                except ca.CAConfigError as exc:
                    raise invalid(str(exc)) from None
                roots = roots_for_write(state)
                if ca.requires_new_root(current, new_config):
                    now = self._clock()
                    try:
                        root = ca.generate_root(state.cluster_id, now, new_config, next_serial(roots))
                    except ca.CAConfigError as exc:
                        raise invalid(str(exc)) from None
                    roots = ca.rotate(roots, root, now)
                updated = CAState(cluster_id=state.cluster_id, config=config_record(new_config), roots=tuple(roots))
                result = await propose(
                    self._raft,
                    attempt_request_id(header.request_id, attempt),
                    CAStateSet(updated, cas=state.modify_index),
                )
                if result.value is not False:
                    return self._queries.meta(self._state.index(*TABLES)), True
            raise conflict(f"CA configuration changed concurrently {MAX_CAS_ATTEMPTS} times in a row; try again")

        return await self._router.serve("ConnectCA/SetConfiguration", header, body, local, write=True)

    async def sign_intermediate(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"csr": PEM} -> {"cert": PEM}, signed by the primary's active root.

        Served by the primary's leader (write routing): a follower could sign too, since the key
        is replicated, but might still hold a root the leader has already rotated out.
        """
        csr = body.get("csr") if isinstance(body, Mapping) else None
        if not isinstance(csr, str) or not csr.strip():
            raise invalid("csr: missing PEM certificate request")

        async def local() -> tuple[QueryMeta, Any]:
            if not self.is_primary:
                raise conflict(ERR_NOT_PRIMARY)
            index, state = self._state.ca_state()
            if state is None or not is_initialized(state):
                raise not_initialized()
            root = active_root(state.roots)
            if root is None:
                raise not_initialized()
            try:
                ttl = stored_config(state).intermediate_cert_ttl_seconds
                cert = ca.sign_intermediate(root, csr, self._clock(), ttl)
            except ValueError as exc:  # CAConfigError included
                # The requester can fix its CSR; anything else is the primary's own CA in trouble.
                raise (invalid if str(exc).startswith("CSR") else internal)(str(exc)) from None
            return self._queries.meta(index), {"cert": cert}

        return await self._router.serve("ConnectCA/SignIntermediate", header, body, local, write=True)

    async def sign(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"csr": PEM of a service CSR} -> the signed leaf (chain, serial, validity, identity).

        Served by this DC's leader (write routing): it holds the CSR gate, and, as for intermediates,
        a follower might still sign with a root the leader has rotated out. The caller's token
        travels with the call; `server/acl/rpc_permissions.py` requires service:write on the
        CSR's service before this runs.
        """
        csr_pem = body.get("csr") if isinstance(body, Mapping) else None
        if not isinstance(csr_pem, str) or not csr_pem.strip():
            raise invalid("csr: missing PEM certificate request")

        async def local() -> tuple[QueryMeta, Any]:
            index, state = self._state.ca_state()
            if state is None or not is_initialized(state):
                raise not_initialized()
            signer = active_root(state.roots)
            if signer is None or not signer.get("SigningKey"):
                raise not_initialized()
            config = stored_config(state)
            try:
                csr, identity = check_leaf_csr(csr_pem, ca.trust_domain(state.cluster_id), self._datacenter)
            except ValueError as exc:
                raise invalid(str(exc)) from None
            if not self._csr_gate.try_acquire(config.csr_max_per_second, config.csr_max_concurrent):
                raise RPCError(grpc.StatusCode.RESOURCE_EXHAUSTED, RATE_LIMITED)
            try:
                leaf = sign_leaf(signer, csr, identity, self._clock(), config.leaf_cert_ttl_seconds)
            except ValueError as exc:
                raise internal(str(exc)) from None  # this DC's own CA is in trouble, not the caller
            finally:
                self._csr_gate.release()
            return self._queries.meta(index), {
                "cert": leaf.cert_pem, "serial": leaf.serial, "service": identity.service,
                "service_uri": identity.uri, "valid_after": leaf.valid_after.timestamp(),
                "valid_before": leaf.valid_before.timestamp(), "root_id": signer.get("ID", ""),
            }

        return await self._router.serve("ConnectCA/Sign", header, body, local, write=True)

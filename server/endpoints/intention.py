"""Intention.* (connect-data §A): views over service-intentions config entries.

Every write reads the destination's entry, computes the new entry with the pure functions in
fsm/intentions/, and proposes it with CAS on the ModifyIndex it read; a lost race (another
write to the same destination in between) is retried on fresh state. Writes are re-targeted to
the primary, so intentions replicate like any other config entry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from meshfed.fsm import ConfigEntryDelete, ConfigEntrySet
from meshfed.fsm import intentions as views
from meshfed.fsm.config_entries import ConfigEntryError, without_store_fields
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.consul_formats.timestamps import format_rfc3339
from meshfed.fsm.records import ConfigEntry
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.rpc.spiffe import SpiffeError, parse_service_uri
from meshfed.server.endpoints.config_entry import entry_json
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import propose

TABLES = ("config_entries",)
KIND = "service-intentions"
CAS_ATTEMPTS = 5
NOT_FOUND_PREFIXES = ("Cannot modify non-existent intention", "Cannot delete non-existent intention")

# Computes (destination, new entry or None to delete) from the current service-intentions entries.
Change = Callable[[list[dict[str, Any]]], tuple[str, dict[str, Any] | None]]


def _rfc3339_now() -> str:
    return format_rfc3339(dt.datetime.now(dt.UTC), microseconds=True)


def _as_rpc_error(exc: ConfigEntryError) -> RPCError:
    message = str(exc)
    if any(prefix in message for prefix in NOT_FOUND_PREFIXES):
        return RPCError(grpc.StatusCode.NOT_FOUND, message)
    return invalid(message)


def _destination_of(intention: Any) -> str:
    """The legacy body's DestinationName, matched case-insensitively like every request key."""
    value = lookup(intention, "DestinationName") if isinstance(intention, dict) else None
    return value if isinstance(value, str) else ""


def _str_field(body: Any, name: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise invalid(f"required query parameter '{name}' not set")
    return value


class IntentionEndpoint:
    def __init__(
        self,
        *,
        primary_datacenter: str,
        state: StateStore,
        raft: Proposer,
        router: RequestRouter,
        queries: Queries,
        default_allow: bool = True,
    ) -> None:
        self._primary = primary_datacenter
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries
        self._default_allow = default_allow

    def handlers(self) -> dict[str, Handler]:
        return {
            "Intention/Apply": self.apply,
            "Intention/List": self.list,
            "Intention/Get": self.get,
            "Intention/Match": self.match,
            "Intention/Check": self.check,
            "Intention/Authorize": self.authorize,
        }

    def _entries(self) -> tuple[int, list[dict[str, Any]]]:
        index, records = self._state.config_entry_list(KIND)
        return index, [entry_json(r) for r in records]

    # ---- reads -------------------------------------------------------------------------------------

    async def _read(self, method: str, header: RequestHeader, body: Any, compute: Callable[[list[dict[str, Any]]], Any],
                    wait_for_existence: bool = False) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            def query() -> tuple[int, Any]:
                index, entries = self._entries()
                try:
                    return index, compute(entries)
                except ConfigEntryError as exc:
                    raise _as_rpc_error(exc) from None

            return await self._queries.run(header, TABLES, query, wait_for_existence=wait_for_existence)

        return await self._router.serve(method, header, body, local, write=False)

    async def list(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        return await self._read("Intention/List", header, body, views.intention_views)

    async def get(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"id"} or {"source", "destination"} -> the intention view or None."""
        if isinstance(body, dict) and body.get("id"):
            intention_id = str(body["id"])
            return await self._read("Intention/Get", header, body, lambda e: views.find_by_id(e, intention_id))
        source, destination = _str_field(body, "source"), _str_field(body, "destination")
        return await self._read("Intention/Get", header, body, lambda e: views.find_exact(e, source, destination))

    async def match(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"by": "source"|"destination", "names": [...]} -> {name: [views] | None}."""
        by = body.get("by") if isinstance(body, dict) else None
        names = body.get("names") if isinstance(body, dict) else None
        if not by:
            raise invalid("required query parameter 'by' not set")
        if not names:
            raise invalid("required query parameter 'name' not set")
        return await self._read("Intention/Match", header, body, lambda e: views.match(e, by, names))

    async def check(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        source, destination = _str_field(body, "source"), _str_field(body, "destination")
        source_type = body.get("source_type") or "consul"
        return await self._read(
            "Intention/Check", header, body,
            lambda e: {"Allowed": views.check(e, source, destination, self._default_allow, source_type=source_type)},
        )

    async def authorize(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """POST /v1/agent/connect/authorize (reference/mesh-dataplane.md §3): may the client whose
        certificate carries `client_uri` open a connection to `target`? Answered from this
        server's replica (a proxy asks on every inbound connection; a Consul agent answers from
        its cache), so new intentions apply once they have replicated here.
        The TLS layer already verified the chain. A trust domain that is a peer's (from its
        stored trust bundle) makes the caller that peer's service: only sources naming that
        peering match it (reference peering.md §3). Any other trust domain is ours (WAN-federated
        datacenters share one), and intentions match by service name."""
        target = body.get("target") if isinstance(body, dict) else None
        client_uri = body.get("client_uri") if isinstance(body, dict) else None
        if not isinstance(target, str) or not target:
            raise invalid("Target service must be specified")
        try:
            client = parse_service_uri(client_uri if isinstance(client_uri, str) else "")
        except SpiffeError as exc:
            kind = "Service" if "Service" in str(exc) else "Connect"
            raise invalid(f"ClientCertURI not a valid {kind} identifier") from None
        local = dataclasses.replace(header, allow_stale=True)
        _, bundles = self._state.peering_trust_bundles()
        peer = next((b.peer_name for b in bundles if b.trust_domain == client.trust_domain), "")

        def decision(entries: list[dict[str, Any]]) -> dict[str, Any]:
            allowed, reason = views.decide(entries, client.service, target, self._default_allow, source_peer=peer)
            return {"Authorized": allowed, "Reason": reason}

        return await self._read("Intention/Authorize", local, body, decision)

    # ---- writes ------------------------------------------------------------------------------------

    async def apply(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"op": "upsert-exact"|"delete-exact"|"create"|"update"|"delete", "source", "destination",
        "id", "intention": {...}} -> True, or {"ID": id} for create/update."""
        if not isinstance(body, dict):
            raise invalid("invalid request: body must be a map")
        op = body.get("op")
        intention = body.get("intention") or {}
        header = dataclasses.replace(header, datacenter=self._primary)
        reply: Any = True
        change: Change
        if op == "upsert-exact":
            source, destination = _str_field(body, "source"), _str_field(body, "destination")

            def change(entries: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
                return destination, views.upsert_exact(self._entry_for(entries, destination), source, destination, intention)
        elif op == "delete-exact":
            source, destination = _str_field(body, "source"), _str_field(body, "destination")

            def change(entries: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
                existing = self._entry_for(entries, destination)
                return destination, views.delete_exact(existing, source) if existing is not None else None
        elif op == "create":
            new_id = str(uuid.uuid4())
            reply = {"ID": new_id}

            def change(entries: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
                destination = _destination_of(intention)
                return destination, views.legacy_create(self._entry_for(entries, destination), intention, new_id, _rfc3339_now())
        elif op in ("update", "delete"):
            intention_id = _str_field(body, "id")
            reply = {"ID": intention_id} if op == "update" else True

            def change(entries: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
                if op == "update":
                    return views.legacy_update(entries, intention_id, intention, _rfc3339_now())
                return views.legacy_delete(entries, intention_id)
        else:
            raise invalid(f"invalid intention operation: {op!r}")

        async def local() -> tuple[QueryMeta, Any]:
            await self._write(header.request_id, change)
            return self._queries.meta(self._state.index(*TABLES)), reply

        return await self._router.serve("Intention/Apply", header, body, local, write=True)

    @staticmethod
    def _entry_for(entries: list[dict[str, Any]], destination: str) -> dict[str, Any] | None:
        return next((e for e in entries if str(e.get("Name", "")).lower() == destination.lower()), None)

    async def _write(self, request_id: str, change: Change) -> None:
        for attempt in range(CAS_ATTEMPTS):
            _, entries = self._entries()
            try:
                destination, new_entry = change(entries)
            except ConfigEntryError as exc:
                raise _as_rpc_error(exc) from None
            existing = self._entry_for(entries, destination)
            cas = existing["ModifyIndex"] if existing is not None else 0
            rid = request_id if attempt == 0 else ""  # a retry after a lost CAS is a new decision
            if new_entry is None:
                if existing is None:
                    return
                result = await propose(self._raft, rid, ConfigEntryDelete(KIND, destination, cas=cas))
            else:
                record = ConfigEntry.of(without_store_fields(new_entry))
                result = await propose(self._raft, rid, ConfigEntrySet(record, cas=cas))
            if result.value:
                return
        raise RPCError(grpc.StatusCode.ABORTED, "intention write lost to concurrent writes; try again")

"""ConfigEntry.* (connect-data §B.2-B.5): Apply, Get, List, ListAll, Delete.

Writes are re-targeted to the primary wherever they arrive (operators.md #6327), so secondaries
change config entries only through replication. exported-services writes must name the primary
explicitly when sent from a secondary (§B.4). An upsert whose content equals the stored entry
answers true without a Raft write, before the CAS check, as Consul does (§B.2 step 5).
Validation failures are INVALID_ARGUMENT (HTTP 400; Consul answers 500 for these).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc

from meshfed.fsm import ConfigEntryDelete, ConfigEntrySet
from meshfed.fsm.config_entries import (
    KINDS,
    ConfigEntryError,
    is_same_content,
    normalize,
    validate,
)
from meshfed.fsm.gateway_mode import resolve_mesh_gateway_mode
from meshfed.fsm.records import ConfigEntry
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import propose

TABLES = ("config_entries",)
KIND_EXPORTED_SERVICES = "exported-services"


def entry_json(record: ConfigEntry) -> dict[str, Any]:
    """The entry as Consul serves it: canonical body, Hash when non-zero, raft indexes."""
    body = dict(record.body)
    if record.hash:
        body["Hash"] = record.hash
    body["CreateIndex"] = record.create_index
    body["ModifyIndex"] = record.modify_index
    return body


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind.lower() not in KINDS:
        raise invalid(f"invalid config entry kind: {kind}")
    return kind.lower()


def _cas(body: dict[str, Any]) -> int | None:
    cas = body.get("cas")
    if cas is None:
        return None
    if isinstance(cas, bool) or not isinstance(cas, int) or cas < 0:
        raise invalid("cas: must be a non-negative integer")
    return cas


def canonical(raw: Any) -> dict[str, Any]:
    """Normalize and validate a request's entry; errors name the field (HTTP 400)."""
    if not isinstance(raw, dict):
        raise invalid("Request decoding failed: the entry must be a JSON object")
    try:
        entry = normalize(raw)
    except ConfigEntryError as exc:
        # Decoding (kind, key names, types) failed: Consul's handler prefixes these, and clients
        # and Consul's own API tests match on the prefix. Validation errors below are not prefixed.
        raise invalid(f"Request decoding failed: {exc}") from None
    try:
        validate(entry)
    except ConfigEntryError as exc:
        raise invalid(str(exc)) from None
    return entry


class ConfigEntryEndpoint:
    def __init__(
        self,
        *,
        datacenter: str,
        primary_datacenter: str,
        state: StateStore,
        raft: Proposer,
        router: RequestRouter,
        queries: Queries,
    ) -> None:
        self._datacenter = datacenter
        self._primary = primary_datacenter
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries

    def handlers(self) -> dict[str, Handler]:
        return {
            "ConfigEntry/Apply": self.apply,
            "ConfigEntry/Delete": self.delete,
            "ConfigEntry/Get": self.get,
            "ConfigEntry/List": self.list,
            "ConfigEntry/ListAll": self.list_all,
            "ConfigEntry/MeshGatewayMode": self.mesh_gateway_mode,
        }

    def _retarget(self, header: RequestHeader, kind: str) -> RequestHeader:
        if kind == KIND_EXPORTED_SERVICES and header.hops == 0:
            target = header.datacenter or self._datacenter
            if target.lower() != self._primary.lower():
                raise RPCError(grpc.StatusCode.INVALID_ARGUMENT,
                               "exported-services writes must not target secondary datacenters."
                               if header.datacenter else
                               "exported-services writes in secondary datacenters must target the primary "
                               "datacenter explicitly.")
        return dataclasses.replace(header, datacenter=self._primary)

    async def apply(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"entry": raw or canonical entry, "cas": int | None} -> bool."""
        if not isinstance(body, dict):
            raise invalid("invalid request: body must be a map")
        entry = canonical(body.get("entry"))
        cas = _cas(body)
        header = self._retarget(header, entry["Kind"])

        async def local() -> tuple[QueryMeta, Any]:
            self._check_peers(entry)
            _, existing = self._state.config_entry_get(entry["Kind"], entry["Name"])
            if existing is not None and is_same_content(existing.body, entry):
                return self._queries.meta(self._state.index(*TABLES)), True
            record = ConfigEntry.of(entry)
            result = await propose(self._raft, header.request_id, ConfigEntrySet(record, cas=cas))
            return self._queries.meta(self._state.index(*TABLES)), bool(result.value)

        return await self._router.serve("ConfigEntry/Apply", header, body, local, write=True)

    def _check_peers(self, entry: dict[str, Any]) -> None:
        """An intention source naming a peering this cluster does not have is a mistake (a typo
        would silently admit nobody): 400, checked on the leader, which holds the peerings."""
        if entry["Kind"] != "service-intentions":
            return
        for n, source in enumerate(entry.get("Sources") or ()):
            peer = source.get("Peer") or ""
            if peer and self._state.peering_get(peer)[1] is None:
                raise invalid(f'Sources[{n}].Peer: there is no peering named "{peer}"')

    async def delete(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"kind", "name", "cas"} -> bool."""
        if not isinstance(body, dict):
            raise invalid("invalid request: body must be a map")
        kind = check_kind(body.get("kind"))
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("Name: must be set")
        cas = _cas(body)
        header = self._retarget(header, kind)

        async def local() -> tuple[QueryMeta, Any]:
            _, existing = self._state.config_entry_get(kind, name)
            if existing is None:
                return self._queries.meta(self._state.index(*TABLES)), True
            result = await propose(self._raft, header.request_id, ConfigEntryDelete(kind, name, cas=cas))
            return self._queries.meta(self._state.index(*TABLES)), bool(result.value)

        return await self._router.serve("ConfigEntry/Delete", header, body, local, write=True)

    async def get(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"kind", "name"} -> {"entry": json or None}. Blocks on a missing entry."""
        kind = check_kind(body.get("kind") if isinstance(body, dict) else None)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("Name: must be set")

        async def local() -> tuple[QueryMeta, Any]:
            meta, record = await self._queries.run(
                header, TABLES, lambda: self._state.config_entry_get(kind, name), wait_for_existence=True
            )
            return meta, {"entry": None if record is None else entry_json(record)}

        return await self._router.serve("ConfigEntry/Get", header, body, local, write=False)

    async def list(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"kind"} -> [entry json], sorted by name."""
        kind = check_kind(body.get("kind") if isinstance(body, dict) else None)

        async def local() -> tuple[QueryMeta, Any]:
            meta, records = await self._queries.run(header, TABLES, lambda: self._state.config_entry_list(kind))
            return meta, [entry_json(r) for r in records]

        return await self._router.serve("ConfigEntry/List", header, body, local, write=False)

    async def list_all(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """Every entry of every kind: what replication fetches from the primary."""

        async def local() -> tuple[QueryMeta, Any]:
            meta, records = await self._queries.run(header, TABLES, lambda: self._state.config_entry_list())
            return meta, [entry_json(r) for r in records]

        return await self._router.serve("ConfigEntry/ListAll", header, body, local, write=False)

    async def mesh_gateway_mode(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"service", "upstream", "upstream_datacenter", "instance_mode", "upstream_mode"} ->
        {"Mode", "Source", ...}: precedence upstream > service instance > service-defaults >
        proxy-defaults (connect-data §B.6)."""
        if not isinstance(body, dict) or not body.get("service") or not body.get("upstream"):
            raise invalid("required query parameters 'service' and 'upstream' not set")
        service, upstream = str(body["service"]), str(body["upstream"])

        def query() -> tuple[int, Any]:
            index, proxy_defaults = self._state.config_entry_get("proxy-defaults", "global")
            _, service_defaults = self._state.config_entry_get("service-defaults", service)
            try:
                mode, source = resolve_mesh_gateway_mode(
                    proxy_defaults.body if proxy_defaults else None,
                    service_defaults.body if service_defaults else None,
                    upstream,
                    instance_mode=str(body.get("instance_mode") or ""),
                    upstream_mode=str(body.get("upstream_mode") or ""),
                )
            except ConfigEntryError as exc:
                raise invalid(str(exc)) from None
            return index, {
                "Service": service,
                "Upstream": upstream,
                "UpstreamDatacenter": body.get("upstream_datacenter") or "",
                "Mode": mode or "default",
                "Source": source,
            }

        async def local() -> tuple[QueryMeta, Any]:
            return await self._queries.run(header, TABLES, query)

        return await self._router.serve("ConfigEntry/MeshGatewayMode", header, body, local, write=False)

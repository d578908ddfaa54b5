"""FederationState.* (reference/federation.md §3): Apply, Get, List, ListMeshGateways, and meshfed's
ListSince (issue #13): only what changed after the caller's index, for the secondaries' replicators.

Every write is re-targeted to the primary datacenter before routing, wherever it arrives, so
secondaries only ever change federation states through replication.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from meshfed.fsm import FederationStateDelete, FederationStateUpsert
from meshfed.fsm.consul_formats.timestamps import format_rfc3339
from meshfed.fsm.federation_changes import FederationStateDelta
from meshfed.fsm.records import federation_state_from_wire, to_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.wire_cache import FederationStateWire
from meshfed.server.endpoints.writes import propose

TABLES = ("federation_states",)

BARRIER_CATCH_UP = 2.0  # seconds a follower waits to apply the leader's index before forwarding the list
OP_UPSERT = "upsert"
OP_DELETE = "delete"
T = TypeVar("T")


def utc_now_rfc3339() -> str:
    return format_rfc3339(dt.datetime.now(dt.UTC), microseconds=True)


class FederationStateEndpoint:
    def __init__(
        self,
        *,
        primary_datacenter: str,
        state: StateStore,
        raft: Proposer,
        router: RequestRouter,
        queries: Queries,
        observe: Callable[[str, float], None] | None = None,
        datacenter: str = "",
    ) -> None:
        self._primary = primary_datacenter
        # This server's datacenter; when set, a follower answers default-consistency mesh-gateway
        # reads from its own store after an index-only barrier on the leader (list_mesh_gateways).
        self._datacenter = datacenter
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries
        self._observe = observe or (lambda name, seconds: None)
        self._wire = FederationStateWire()  # one wire dict per record, reused until a write replaces it

    def handlers(self) -> dict[str, Handler]:
        return {
            "FederationState/Apply": self.apply,
            "FederationState/Get": self.get,
            "FederationState/List": self.list,
            "FederationState/ListSince": self.list_since,
            "FederationState/ListMeshGateways": self.list_mesh_gateways,
        }

    async def apply(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"op": "upsert"|"delete", "state": <wire FederationState>} -> True/False."""
        header = dataclasses.replace(header, datacenter=self._primary)
        if not isinstance(body, dict):
            raise invalid("invalid request: body must be a map")
        op = body.get("op")
        raw_state = body.get("state")
        if not isinstance(raw_state, dict) or not raw_state.get("datacenter"):
            raise invalid("invalid request: missing federation state datacenter")
        if op not in (OP_UPSERT, OP_DELETE):
            raise invalid(f"Invalid federation state operation: {op}")
        try:
            fed_state = federation_state_from_wire(raw_state)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # AttributeError: a nested record that is not a map (e.g. a gateway's node given as 7).
            raise invalid(f"invalid request: malformed federation state: {exc}") from None

        async def local() -> tuple[QueryMeta, Any]:
            started = time.perf_counter()
            if op == OP_UPSERT:
                state = fed_state
                if not state.updated_at:
                    state = dataclasses.replace(state, updated_at=utc_now_rfc3339())
                await propose(self._raft, header.request_id, FederationStateUpsert(state))
                reply = True
            else:
                await propose(self._raft, header.request_id, FederationStateDelete(fed_state.datacenter))
                reply = False
            self._observe("apply", time.perf_counter() - started)
            return self._queries.meta(self._state.index(*TABLES)), reply

        return await self._router.serve("FederationState/Apply", header, body, local, write=True)

    async def get(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"datacenter": name} -> {"state": wire or None}."""
        name = body.get("datacenter") if isinstance(body, dict) else None
        if not name:
            raise invalid("Missing datacenter name")

        async def local() -> tuple[QueryMeta, Any]:
            started = time.perf_counter()
            meta, value = await self._queries.run(
                header, TABLES, lambda: self._state.federation_state_get(name), wait_for_existence=True
            )
            self._observe("get", time.perf_counter() - started)
            return meta, {"state": None if value is None else to_wire(value)}

        return await self._router.serve("FederationState/Get", header, body, local, write=False)

    async def list(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            started = time.perf_counter()
            meta, states = await self._queries.run(header, TABLES, self._state.federation_state_list)
            self._observe("list", time.perf_counter() - started)
            return meta, self._wire.wire_list(states)

        return await self._router.serve("FederationState/List", header, body, local, write=False)

    async def list_since(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"since": index} (defaults to the header's MinQueryIndex) -> {"resync": True} when
        only a full List is correct (fsm/federation_changes.py), else {"resync": False, "states":
        [wire of each record changed after `since`], "deleted": [lower-cased datacenters]}.

        A blocking query like List: with MinQueryIndex it waits for a change after that index, so
        a replicator long-polls on it and each write costs what it changed, not the table."""
        since = body.get("since", header.min_query_index) if isinstance(body, dict) else header.min_query_index
        _check_since(since)
        index_only = isinstance(body, dict) and body.get("index_only") is True

        async def local() -> tuple[QueryMeta, Any]:
            if index_only:  # a follower's read barrier: the table index, no data
                meta, _ = await self._queries.run(header, TABLES, lambda: (self._state.index(*TABLES), None))
                return meta, {}
            started = time.perf_counter()
            meta, delta = await self._queries.run(header, TABLES, lambda: self._state.federation_state_changes(since))
            self._observe("list_since", time.perf_counter() - started)
            return meta, self._since_answer(delta)

        return await self._router.serve("FederationState/ListSince", header, body, local, write=False)

    def _since_answer(self, delta: FederationStateDelta | None) -> dict[str, Any]:
        if delta is None:
            return {"resync": True}
        return {"resync": False, "states": [self._wire.wire(s) for s in delta.states], "deleted": list(delta.deleted)}

    async def mesh_gateways_since(self, header: RequestHeader, since: Any) -> tuple[QueryMeta, dict[str, Any]]:
        """meshfed's own mesh gateways' delta read (issue #13): ListSince's answer reshaped by
        `gateways_delta`: {"resync": True}, or {"resync": False, "mesh_gateways": {datacenter:
        [gateway wire]} of each record changed after `since` (empty when it has none left),
        "deleted": [lower-cased datacenters]}. Blocking on the header's MinQueryIndex like List.

        For our own datacenter it takes the same path as `list_mesh_gateways`: an index-only
        barrier on the leader, then the answer from this server's own change log, so any token
        that may read the gateway list may ask (the HTTP layer filters the rows the same way). A
        store that does not catch up in time answers a resync: the caller re-reads the full list,
        which has its own fallback. Another datacenter's, or with the barrier off, goes through
        ListSince itself (operator:read when forwarded)."""
        _check_since(since)
        if not self._barrier_serves(header):
            meta, answer = await self.list_since(header, {"since": since})
            return meta, gateways_delta(answer)

        def read() -> tuple[int, FederationStateDelta | None]:
            return self._state.federation_state_changes(since)

        async def local() -> tuple[QueryMeta, Any]:
            started = time.perf_counter()
            meta, delta = await self._queries.run(header, TABLES, read)
            self._observe("list_since", time.perf_counter() - started)
            return meta, self._since_answer(delta)

        async def resync(meta: QueryMeta) -> tuple[QueryMeta, Any]:
            return meta, {"resync": True}

        meta, answer = await self._after_barrier(header, local, read, self._since_answer, resync, "list_since")
        return meta, gateways_delta(answer)

    def _barrier_serves(self, header: RequestHeader) -> bool:
        """Whether a read of the local datacenter may take the index-barrier path (see below)."""
        target = header.datacenter or self._datacenter
        return bool(self._datacenter) and target.lower() == self._datacenter.lower()

    async def list_mesh_gateways(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            started = time.perf_counter()
            meta, states = await self._queries.run(header, TABLES, self._state.federation_state_list)
            self._observe("list_mesh_gateways", time.perf_counter() - started)
            return meta, self._wire.mesh_gateways(states)

        async def forwarded(meta: QueryMeta | None = None) -> tuple[QueryMeta, Any]:
            return await self._router.serve("FederationState/ListMeshGateways", header, body, local, write=False)

        if not self._barrier_serves(header):
            return await forwarded()
        return await self._after_barrier(header, local, self._state.federation_state_list,
                                         self._wire.mesh_gateways, forwarded)

    async def _after_barrier(
        self,
        header: RequestHeader,
        local: Callable[[], Awaitable[tuple[QueryMeta, Any]]],
        read: Callable[[], tuple[int, T]],
        shape: Callable[[T], Any],
        fallback: Callable[[QueryMeta], Awaitable[tuple[QueryMeta, Any]]],
        observed: str = "list_mesh_gateways",
    ) -> tuple[QueryMeta, Any]:
        """Where the router would forward to the leader, forward only an index-only ListSince (the
        same blocking wait, a reply of a few bytes), then answer `shape(read())` from this
        server's own store once it has applied that index: with 1,000 DCs the leader no longer
        msgpack-encodes 3 MB per follower call, nor the follower decodes and compares it. The
        answer is as fresh as the leader's (the entry that set the leader's index is applied here
        before we read). If this store does not catch up within BARRIER_CATCH_UP seconds, the
        caller's `fallback` answers (the whole list forwarded; for a delta, a resync)."""
        served_here = False

        async def here() -> tuple[QueryMeta, Any]:
            nonlocal served_here
            served_here = True
            return await local()

        answer = await self._router.serve("FederationState/ListSince", header,
                                          {"since": header.min_query_index, "index_only": True}, here, write=False)
        if served_here:
            return answer
        meta, _ = answer
        caught_up = RequestHeader(datacenter=header.datacenter, allow_stale=True, min_query_index=meta.index - 1,
                                  max_query_time=BARRIER_CATCH_UP)
        local_meta, value = await self._queries.run(caught_up, TABLES, read)
        if local_meta.index < meta.index:
            return await fallback(meta)
        self._observe(observed, 0.0)
        return meta, shape(value)


def _check_since(since: Any) -> None:
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        raise invalid("invalid request: since must be an integer >= 0")


def gateways_delta(answer: Any) -> dict[str, Any]:
    """ListSince's answer -> the mesh gateways' delta: each changed record's gateways by its
    datacenter (an empty list: it has none left, the caller drops it), deletions as they are."""
    if not isinstance(answer, dict) or answer.get("resync") is not False:
        return {"resync": True}
    return {"resync": False, "mesh_gateways": {s["datacenter"]: s["mesh_gateways"] for s in answer.get("states") or ()},
            "deleted": list(answer.get("deleted") or ())}

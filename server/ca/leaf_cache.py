"""The leaf certificates this server hands out (`GET /v1/agent/connect/ca/leaf/<service>`), as a
Consul agent's leaf cache does (reference/mesh-dataplane.md §2.1, §2.3).

The invariant kept here: a cached leaf is served only while (a) it is before its renewal point,
a random moment between 60 % and 90 % of its lifetime (so a fleet does not renew in lockstep), and
(b) it was signed under the root that is active now. Otherwise the next request issues a new one:
a fresh key made here, kept in this process's memory only, and a CSR signed by the leader through
`ConnectCA/Sign` with the caller's token. Each new leaf gets a higher index, so a blocking caller
(`?index=` of the one it holds) wakes when renewal or a root rotation replaces it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import conflict, invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.spiffe import ServiceID, is_label
from meshfed.server.ca.identity import trust_domain
from meshfed.server.ca.leaf import new_leaf_request
from meshfed.server.ca.roots import active_root, is_initialized
from meshfed.server.requests.watch import WatchHub

RENEW_WINDOW = (0.6, 0.9)  # fraction of the lifetime at which a leaf is replaced
DEFAULT_WAIT = 300.0  # Consul's default blocking wait
MAX_WAIT = 600.0
CA_TABLES = ("connect_ca",)

Sign = Callable[[RequestHeader, dict[str, Any]], Awaitable[tuple[QueryMeta, Any]]]


@dataclass(frozen=True)
class CachedLeaf:
    index: int
    root_id: str
    renew_at: float  # wall-clock seconds
    issued: dict[str, Any]  # the signed answer plus the private key


def renew_at(valid_after: float, valid_before: float, rng: random.Random) -> float:
    return valid_after + (valid_before - valid_after) * rng.uniform(*RENEW_WINDOW)


def still_good(entry: CachedLeaf | None, active_root_id: str, now: float) -> bool:
    return entry is not None and entry.root_id == active_root_id and now < entry.renew_at


class LeafCache:
    def __init__(self, *, datacenter: str, state: StateStore, watches: WatchHub, sign: Sign,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self._datacenter = datacenter
        self._state = state
        self._watches = watches
        self._sign = sign
        self._clock = clock
        self._rng = rng or random.Random()
        self._entries: dict[str, CachedLeaf] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_index = 0
        self.issued = 0  # leaves signed for callers of this server (a metric)

    def _ca(self) -> tuple[str, str, str, int]:
        """(trust domain, active root id, key type, key bits) now; a CA still bootstrapping is a 409."""
        _, state = self._state.ca_state()
        root = active_root(state.roots) if state is not None and is_initialized(state) else None
        if state is None or root is None:
            raise conflict("CA has not finished initializing")
        return (trust_domain(state.cluster_id), str(root.get("ID", "")), str(root.get("PrivateKeyType") or "ec"),
                int(root.get("PrivateKeyBits") or 256))

    async def get(self, service: str, header: RequestHeader) -> tuple[CachedLeaf, bool]:
        """(the leaf to serve, whether it came from the cache). With `header.min_query_index` at or
        past the current leaf's index, waits (up to the query's wait) for a newer one."""
        if not is_label(service):
            raise invalid(f"invalid service name {service!r}")
        wait = min(header.max_query_time or DEFAULT_WAIT, MAX_WAIT)
        deadline = self._clock() + wait
        while True:
            futures = self._watches.futures(CA_TABLES)  # before reading: a rotation in between wakes us
            entry, hit = await self._current(service, header)
            remaining = deadline - self._clock()
            if not header.min_query_index or entry.index > header.min_query_index or remaining <= 0:
                return entry, hit
            until_renewal = max(0.0, entry.renew_at - self._clock())
            await self._watches.wait_any(futures, min(remaining, until_renewal + 0.01))

    async def _current(self, service: str, header: RequestHeader) -> tuple[CachedLeaf, bool]:
        lock = self._locks.setdefault(service, asyncio.Lock())
        async with lock:  # one signature per renewal, however many callers ask at once
            domain, root_id, key_type, key_bits = self._ca()
            entry = self._entries.get(service)
            if entry is not None and still_good(entry, root_id, self._clock()):
                return entry, True
            request = new_leaf_request(ServiceID(domain, "default", self._datacenter, service), key_type, key_bits)
            # Only the caller's token travels: the signature is a write, never a blocking read.
            meta, signed = await self._sign(RequestHeader(token=header.token), {"csr": request.csr_pem})
            self._last_index = max(self._last_index + 1, meta.index)
            entry = CachedLeaf(
                index=self._last_index,
                root_id=str(signed.get("root_id") or root_id),
                renew_at=renew_at(float(signed["valid_after"]), float(signed["valid_before"]), self._rng),
                issued={**signed, "private_key": request.key_pem},
            )
            self._entries[service] = entry
            self.issued += 1
            return entry, False

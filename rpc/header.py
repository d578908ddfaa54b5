"""What travels with every RPC: the request header and the query meta (DESIGN §6).

Field names follow Consul's QueryOptions / QueryMeta. Both are plain dataclasses with a msgpack
wire form, so the same values flow from HTTP query parameters through forwarding hops unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from dataclasses import dataclass
from typing import Any, Self

# Blocking-query limits, as Consul's server (reference/federation.md §3.5).
DEFAULT_QUERY_TIME = 300.0
MAX_QUERY_TIME = 600.0


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """In declaration order, so a header encodes to the same bytes every time (shared calls key on them)."""
    return tuple(f.name for f in dataclasses.fields(cls))


class WireForm:
    """The msgpack wire form of a flat dataclass of scalars, on every RPC's both ends.

    Unknown keys are dropped (a newer server's fields), missing ones take their defaults (an older
    server's). `dataclasses.asdict` deep-copies and lists the fields on every call: ~10 us a
    header, twice per forwarded call."""

    def to_wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _field_names(type(self))}

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        if not isinstance(data, dict):
            return cls()
        names = _field_names(cls)
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class RequestHeader(WireForm):
    datacenter: str = ""  # routing datacenter ("" = the receiving server's own)
    token: str = ""
    min_query_index: int = 0
    max_query_time: float = 0.0  # seconds; 0 = server default when blocking
    allow_stale: bool = False
    require_consistent: bool = False
    request_id: str = ""  # idempotency key of a write, kept across forwarding hops and retries
    hops: int = 0  # forwarding hops so far; bounded to stop a routing loop

    def forwarded(self, **changes: Any) -> RequestHeader:
        return dataclasses.replace(self, hops=self.hops + 1, **changes)

    @property
    def blocking(self) -> bool:
        return self.min_query_index > 0


@dataclass(frozen=True)
class QueryMeta(WireForm):
    index: int = 1
    known_leader: bool = False
    last_contact: float = 0.0  # seconds
    consistency_level: str = ""
    # The answering server dropped rows the caller's token may not read (server/acl/rpc_filters.py);
    # HTTP says so as X-Consul-Results-Filtered-By-ACLs. An older server leaves it out: False.
    results_filtered: bool = False


def new_request_id() -> str:
    """A write's idempotency key: 128 random bits as 32 hex digits, like `uuid4().hex`.

    Unique is all it must be (the state machine applies a request id once); it is never a secret,
    so it comes from `random` (seeded from the OS at start and again in a forked child) rather
    than `os.urandom`: a getrandom syscall per write released the GIL on the event loop, and under
    load each release cost a wait for the Raft thread to hand it back (4.6 % of the loop's samples
    with 64 writers)."""
    return f"{random.getrandbits(128):032x}"

"""Which tokens have expired, and which of them this datacenter's leader may delete.

Pure: the caller passes the time (fsm/ reads no clock). Reference/acl.md §2.1: a token with an
`ExpirationTime` stops working at that moment (the resolver checks the time on every request) and
is reaped afterwards. As in Consul, the primary's leader reaps global tokens and every
datacenter's leader reaps its own local ones: a secondary's copy of a global token goes away when
replication copies the primary's delete, so two datacenters never race to delete one token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshfed.fsm.consul_formats.timestamps import parse_rfc3339


@dataclass(frozen=True)
class Expiring:
    """What the reaper needs to know of a token that has an expiration time."""

    accessor_id: str
    expiration_time: str  # RFC 3339
    local: bool


def expires_at(expiration_time: str | None) -> float | None:
    """Unix seconds of an RFC 3339 expiration; None for "never" and for a value that does not
    parse (validated on write; a newer writer's format must not make the reaper crash or delete)."""
    if not expiration_time:
        return None
    try:
        return parse_rfc3339(expiration_time).timestamp()
    except ValueError:
        return None


def is_expired(expiration_time: str | None, now: float) -> bool:
    """Expired at exactly `ExpirationTime`, not one tick later (the resolver uses the same rule)."""
    moment = expires_at(expiration_time)
    return moment is not None and moment <= now


def reapable(tokens: Iterable[Expiring], now: float, *, primary: bool) -> list[str]:
    """AccessorIDs, sorted, of expired tokens this leader deletes: local ones always, global ones
    only in the primary."""
    return sorted(
        token.accessor_id
        for token in tokens
        if (primary or token.local) and is_expired(token.expiration_time, now)
    )

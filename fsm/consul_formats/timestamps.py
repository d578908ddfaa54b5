"""RFC 3339 times as Consul writes them: UTC, with a `Z`, optionally with a fraction.

Formatting takes the moment from the caller (`fsm/` reads no clock); parsing accepts both `Z` and
numeric offsets, since stored values may come from other Consul versions.
"""

from __future__ import annotations

import datetime
import re

# What Go's time.RFC3339 layout accepts: date, `T`, time, optional fraction, `Z` or an offset.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def as_utc(moment: datetime.datetime) -> datetime.datetime:
    """Aware UTC; a naive moment is taken to be UTC already (that is how this tree makes them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def format_rfc3339(moment: datetime.datetime, *, microseconds: bool = False) -> str:
    """`2026-01-02T03:04:05Z`, or with `microseconds` `2026-01-02T03:04:05.000006Z` (always six
    digits: intention and federation-state times have been written that way)."""
    layout = "%Y-%m-%dT%H:%M:%S.%fZ" if microseconds else "%Y-%m-%dT%H:%M:%SZ"
    return as_utc(moment).strftime(layout)


def parse_rfc3339(text: str) -> datetime.datetime:
    """The moment `text` names; naive results are taken as UTC. Raises ValueError when it is not a time."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def is_rfc3339(text: str) -> bool:
    """Whether `text` has RFC 3339's shape (the check Consul's validation makes; no calendar maths)."""
    return _RFC3339.fullmatch(text) is not None

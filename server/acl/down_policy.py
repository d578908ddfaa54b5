"""`acl.down_policy`: what a secondary grants when the primary cannot be asked about a token
(reference/acl.md §6.2). A pure decision, so the table is tested on its own; the resolver does
the asking and the caching."""

from __future__ import annotations

from enum import Enum

DOWN_POLICIES = ("extend-cache", "async-cache", "deny", "allow")


class WhenDown(Enum):
    ALLOW_ALL = "allow all"
    DENY_ALL = "deny all"
    CACHED = "the identity resolved before"


def when_down(down_policy: str, have_cached: bool) -> WhenDown:
    """`extend-cache`/`async-cache` keep a token resolved before, however old, and deny one never
    seen; `deny` denies (an entry still within `token_ttl` never gets here); `allow` allows."""
    if down_policy == "allow":
        return WhenDown.ALLOW_ALL
    if down_policy in ("extend-cache", "async-cache") and have_cached:
        return WhenDown.CACHED
    return WhenDown.DENY_ALL


def serves_stale_first(down_policy: str) -> bool:
    """`async-cache` answers with an expired entry at once and refreshes it in the background."""
    return down_policy == "async-cache"

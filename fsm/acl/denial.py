"""Consul's permission-denied text (reference/acl.md §4.4), so clients matching on it keep working.

Clients match on the prefix `Permission denied`; tools and humans read the rest, which names the
token (by AccessorID, never the secret), the permission and, for named resources, the name.
"""

from __future__ import annotations

import json

from meshfed.fsm.acl.rules import Access

ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"
PERMISSION_DENIED = "Permission denied"
_ACCESS_WORDS = {Access.READ: "read", Access.LIST: "list", Access.WRITE: "write", Access.DENY: "deny"}


def _go_quoted(segment: str) -> str:
    """Go's `%q` for the names we see: double quotes, backslash escapes, printable Unicode kept."""
    return json.dumps(segment, ensure_ascii=False)


def permission_denied_text(accessor_id: str, resource: str, access: Access, segment: str | None = None) -> str:
    """The 403 body for a failed `resource:access` check.

    `segment` is the resource name (service, node, key, ...); None for unnamed resources such as
    operator, acl or mesh, where Consul leaves out the ` on "..."` part.
    """
    permission = f"'{resource}:{_ACCESS_WORDS[access]}'"
    on_segment = "" if segment is None else f" on {_go_quoted(segment)}"
    if accessor_id == ANONYMOUS_ACCESSOR_ID:
        return (f"{PERMISSION_DENIED}: anonymous token lacks permission {permission}{on_segment}. "
                "The anonymous token is used implicitly when a request does not specify a token.")
    return f"{PERMISSION_DENIED}: token with AccessorID '{accessor_id}' lacks permission {permission}{on_segment}"

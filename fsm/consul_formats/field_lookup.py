"""Request field names matched the way Go's `encoding/json` matches struct fields: case-insensitively.

Real clients depend on it (py-consul sends `node`, `serviceid`; reference/operators.md §2.2), so
every decoder of a Consul-shaped body looks its fields up here rather than with `body[name]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def lookup(body: Mapping[Any, Any], *names: str) -> Any:
    """Value of the first of `names` present in `body`, matched case-insensitively; None if absent.

    Exact-case keys are tried first (in the order of `names`), then case-insensitive matches (same
    order), so `{"TaggedAddresses": a, "tagged_addresses": b}` yields `a` and a client mixing
    spellings gets a deterministic answer. JSON `null` and an absent key both give None: Go leaves
    the zero value for both.
    """
    for name in names:
        if name in body:
            return body[name]
    for name in names:
        wanted = name.casefold()
        for key, value in body.items():
            if isinstance(key, str) and key.casefold() == wanted:
                return value
    return None

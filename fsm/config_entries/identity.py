"""Which entry is this, and has it changed: the key, the store-owned fields, the content hash.

Everything that files, finds, diffs or replicates config entries asks these questions here, so
that the store, the HTTP layer and replication can never disagree about whether `Web` and `web`
are one entry or whether a rewrite is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from meshfed.fsm.config_entries.schema import (
    KIND_MESH,
    KIND_PROXY_DEFAULTS,
    MESH_NAME,
    PROXY_DEFAULTS_NAME,
    WILDCARD,
)

# Fields the store sets on an entry it serves. They are not content: a client echoing them back
# (a read-modify-write) is not an error, and they never count towards the content hash.
STORE_OWNED_FIELDS = ("CreateIndex", "ModifyIndex", "Hash")


def config_entry_key(kind: str, name: str) -> tuple[str, str]:
    """(lower-cased kind, lower-cased name): lookups are case-insensitive, so Web and web are one entry."""
    return kind.lower(), name.lower()


def entry_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    """`config_entry_key` of an entry dict; a singleton kind without a Name gets its fixed name."""
    kind = str(entry.get("Kind", "")).lower()
    name = str(entry.get("Name") or "")
    if not name:
        name = {KIND_PROXY_DEFAULTS: PROXY_DEFAULTS_NAME, KIND_MESH: MESH_NAME}.get(kind, "")
    return config_entry_key(kind, name)


def without_store_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's content: what a client wrote, without the store's indexes and Hash."""
    return {k: v for k, v in entry.items() if k not in STORE_OWNED_FIELDS}


def precedence(source_name: str, destination_name: str) -> int:
    """Intention precedence in CE, where both namespaces are always "default" (§A.4):
    exact->exact 9, *->exact 8, exact->* 6, *->* 5."""
    highest = 6 if destination_name == WILDCARD else 9
    return highest - (1 if source_name == WILDCARD else 0)


def _content_bytes(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(without_store_fields(entry), sort_keys=True, separators=(",", ":")).encode()


def content_hash(entry: Mapping[str, Any]) -> int:
    """Unsigned 64-bit digest of the content, raft indexes and Hash excluded, stable across
    processes and versions of Python (replication compares it with the primary's). Never 0:
    replication treats a zero hash as "unknown, rewrite" (§B.5)."""
    digest = hashlib.blake2b(_content_bytes(entry), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def is_same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal content ignoring raft indexes and Hash. Compared as serialized text, not with ==,
    so that `true` and `1` (or 1 and 1.0) inside a free-form Config count as a change."""
    return _content_bytes(a) == _content_bytes(b)

"""Consul's intention API, served as views over `service-intentions` config entries.

Since Consul 1.9 an intention is not a record of its own: the store holds one `service-intentions`
entry per destination, and each of its `Sources` *is* one intention (reference/connect-data.md §A.1).
Keeping that model means one table, one replication path (config entries, §A.8) and no second
source of truth that could drift. This package is the translation layer, in both directions, as pure
functions over entry dicts (no store, no clock: the caller passes times and ids in):

- reads (reads.py): `intention_views` turns entries into the Intention JSON of §A.2, sorted as §A.4 says;
  `match` and `check` answer §A.6 from the same views; `find_by_id`/`find_exact` pick one.
- writes (writes.py): each API call becomes "the new entry for destination D" (or None: delete D's entry),
  which the caller proposes as an ordinary config-entry write. Two write styles coexist:
  *by name* (`/exact`, a plain entry edit, clears legacy fields like any config-entry write) and
  *by ID* (the deprecated API: sources carry `LegacyID`, `LegacyMeta` and timestamps). The ID API
  may only touch an entry whose every source is legacy (the "mixing rule", §A.1).

Names: entries are keyed by lower-cased destination, so destinations compare case-insensitively;
source names are identities inside an entry and compare exactly, as Consul compares them.
CE only: the namespace is always `default` and partitions other than `default` are refused.
"""

from meshfed.fsm.intentions.reads import (
    BY_DESTINATION,
    BY_SOURCE,
    DEFAULT_NAMESPACE,
    DEFAULT_PARTITION,
    PEER_PREFIX,
    check,
    decide,
    default_allows,
    find_by_id,
    find_exact,
    intention_hash,
    intention_views,
    match,
    parse_service_ref,
    sort_key,
)
from meshfed.fsm.intentions.writes import (
    IntentionErrors,
    delete_exact,
    legacy_create,
    legacy_delete,
    legacy_update,
    upsert_exact,
)

__all__ = [
    "BY_DESTINATION", "BY_SOURCE", "DEFAULT_NAMESPACE", "DEFAULT_PARTITION", "PEER_PREFIX", "IntentionErrors",
    "check", "decide", "default_allows", "delete_exact", "find_by_id", "find_exact", "intention_hash",
    "intention_views", "legacy_create",
    "legacy_delete", "legacy_update", "match", "parse_service_ref", "sort_key", "upsert_exact",
]

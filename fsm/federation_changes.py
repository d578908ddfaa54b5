"""Which federation states changed after a given index: the data behind `FederationState/ListSince`
(issue #13 goal 1).

With 1,000 DCs in the table, answering every replication long-poll with the whole table made each
write cost O(table) on the primary and on every secondary. A caller that already holds the table at
index N only needs the records changed after N and the datacenters deleted after N.

`FederationChanges` keeps, per datacenter, the index of its last change (upsert or delete), in
change order, so "since N" walks back from the newest change and stops at the first one <= N:
O(changes since N), never O(table). Deleted datacenters stay in it as tombstones, at most
`MAX_TOMBSTONES`; trimming the oldest entries raises `horizon`.

The one invariant: **every change with an index > `horizon` is in the log.** A caller behind the
horizon, or ahead of the store (the store was restored or rebuilt: its indexes no longer mean what
the caller thinks), gets `None`: "do a full resync". The log is not part of the snapshot: a restored
store starts with an empty log and `horizon` = the restored table index, so a caller from before the
restore resyncs in full instead of being told "nothing changed". Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshfed.fsm.records import FederationState

MAX_TOMBSTONES = 1024


@dataclass(frozen=True)
class ChangesSince:
    """Lower-cased datacenter keys: `upserted` are in the table now, `deleted` are not."""

    upserted: tuple[str, ...]
    deleted: tuple[str, ...]


@dataclass(frozen=True)
class FederationStateDelta:
    """The store's answer to "what changed after `since`": current records and deleted keys."""

    since: int
    states: tuple[FederationState, ...]
    deleted: tuple[str, ...]


class FederationChanges:
    def __init__(self, horizon: int = 0, max_tombstones: int = MAX_TOMBSTONES) -> None:
        self.horizon = horizon
        self.max_tombstones = max_tombstones
        self._last_change: dict[str, int] = {}  # lower(dc) -> index of its last change, oldest first
        self._deleted: set[str] = set()  # keys of _last_change that are tombstones

    def __len__(self) -> int:
        return len(self._last_change)

    def upserted(self, key: str, index: int) -> None:
        self._record(key, index)
        self._deleted.discard(key)

    def deleted(self, key: str, index: int) -> None:
        self._record(key, index)
        self._deleted.add(key)
        while len(self._deleted) > self.max_tombstones:
            self._trim_oldest()

    def reset(self, horizon: int) -> None:
        """Forget everything (a restore): changes up to `horizon` are no longer answerable."""
        self.horizon = horizon
        self._last_change.clear()
        self._deleted.clear()

    def since(self, index: int, table_index: int) -> ChangesSince | None:
        """What changed after `index`, or None when only a full resync is correct: `index` is 0,
        behind the horizon, or ahead of the table (`table_index`, the store's current index)."""
        if index <= 0 or index < self.horizon or index > table_index:
            return None
        upserted: list[str] = []
        deleted: list[str] = []
        for key in reversed(self._last_change):
            if self._last_change[key] <= index:
                break
            (deleted if key in self._deleted else upserted).append(key)
        return ChangesSince(tuple(upserted), tuple(deleted))

    def _record(self, key: str, index: int) -> None:
        # Re-inserting moves the key to the end: the dict stays ordered by last change, since the
        # FSM applies indexes in increasing order.
        self._last_change.pop(key, None)
        self._last_change[key] = index

    def _trim_oldest(self) -> None:
        key = next(iter(self._last_change))
        index = self._last_change.pop(key)
        self._deleted.discard(key)
        # Changes at `index` or before may now be missing; a caller at `index` saw all of them.
        self.horizon = max(self.horizon, index)

"""The state machine's snapshot data (`StateMachine.snapshot_data()`), besides its tables.

The same map is the payload of a Raft snapshot (fsm/snapshot.py) and the `machine` part of a
backup (fsm/snapshot_format.py): `last_index` (the Raft index), `index_offset` (store index = Raft
index + offset, moved only by a backup restore; absent in snapshots older than restores, hence 0),
`dedupe` (request id -> remembered result), `tables`, and while a restore upload is half-way,
`restore_staging` (fsm/restore.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

from meshfed.fsm.restore import RestoreStaging
from meshfed.fsm.results import Result, result_from_wire
from meshfed.fsm.snapshot_format import STAGING_KEY


class MachineData(NamedTuple):
    last_index: int
    dedupe: OrderedDict[str, Result]
    index_offset: int
    staging: RestoreStaging


def parse_machine_data(data: Any) -> MachineData:
    """The parts of `StateMachine.snapshot_data()` output besides the tables (which
    `StateStore.load` parses). Raises ValueError naming the first bad field."""
    if not isinstance(data, dict) or "tables" not in data:
        raise ValueError("snapshot data must be a map with 'tables', 'last_index' and 'dedupe'")
    last_index = data.get("last_index")
    if isinstance(last_index, bool) or not isinstance(last_index, int) or last_index < 0:
        raise ValueError(f"last_index is {last_index!r}, want an integer >= 0")
    offset = data.get("index_offset", 0)  # absent in snapshots written before restores existed
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"index_offset is {offset!r}, want an integer >= 0")
    dedupe: OrderedDict[str, Result] = OrderedDict()
    for item in data.get("dedupe") or []:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
            raise ValueError(f"dedupe entry {item!r:.80} is not [request_id, result]")
        dedupe[item[0]] = result_from_wire(item[1])
    return MachineData(last_index, dedupe, offset, RestoreStaging.from_export(data.get(STAGING_KEY)))

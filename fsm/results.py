"""The outcome of applying one command.

Apply must never raise (a raising apply wedges PySyncObj's tick thread, reference/pysyncobj.md
§1.3), so every outcome, including rejections, is a value. Results are also remembered in the
dedupe window and written into snapshots, which is why they convert to and from plain lists.
The `code` values are the vocabulary the RPC layer maps to gRPC/HTTP statuses (DESIGN.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CODE_INVALID = "invalid"  # the command is malformed or contradicts the state (HTTP 400)
CODE_NOT_FOUND = "not_found"  # the command targets a record that does not exist (HTTP 404)
CODE_CONFLICT = "conflict"  # a compare-and-set style precondition failed (HTTP 409)
CODE_INTERNAL = "internal"  # undecodable entry or a bug in apply (HTTP 500)
ERROR_CODES = (CODE_INVALID, CODE_NOT_FOUND, CODE_CONFLICT, CODE_INTERNAL)


@dataclass(frozen=True)
class Result:
    ok: bool
    value: Any = None  # e.g. True for a federation-state upsert, the entry index for Noop
    error: str = ""  # human message naming the field
    code: str = ""  # "" when ok, else one of ERROR_CODES

    def to_wire(self) -> list[Any]:
        """Compact form for snapshots; `value` is always msgpack-able (None, bool, int)."""
        return [self.ok, self.value, self.error, self.code]


def result_from_wire(data: Any) -> Result:
    """Inverse of `Result.to_wire`; raises ValueError on anything else."""
    if not isinstance(data, (list, tuple)) or len(data) != 4:
        raise ValueError(f"result must be a list of 4 items, got {data!r:.80}")
    ok, value, error, code = data
    if not isinstance(ok, bool) or not isinstance(error, str) or not isinstance(code, str):
        raise ValueError(f"result has wrong item types: {data!r:.80}")
    return Result(ok=ok, value=value, error=error, code=code)


def success(value: Any = None) -> Result:
    return Result(ok=True, value=value)


def failure(code: str, error: str) -> Result:
    return Result(ok=False, error=error, code=code)

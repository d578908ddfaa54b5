"""Opt-in write tracing: follow one acknowledged write from the HTTP answer to the Raft log.

A write lost after a fault can only be explained by joining what each server saw: which server
answered the client, under which request id, at which (index, term) the proposing node's commit
callback fired and with what outcome, and which request ids each replica applied at each index.
Set `MESHFED_TRACE_WRITES=PREFIX` in a server's environment and it appends JSON lines to
`PREFIX<pid>.jsonl` (one file per process, so a restarted server starts a new file; the first line
names the Raft address). Unset (the default), `TRACE` is None and every hook is one `if`.

The file holds node names and request ids, never request bodies or keys; it is created 0600.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

ENV_VAR = "MESHFED_TRACE_WRITES"


class WriteTrace:
    """Appends one JSON object per event; safe from the tick thread and the event loop at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", buffering=1)  # line-buffered: a kill -9 keeps what was written
        self._lock = threading.Lock()

    def record(self, event: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 6), "ev": event, **fields}, default=str)
        with self._lock:
            self._file.write(line + "\n")


def _from_environment() -> WriteTrace | None:
    prefix = os.environ.get(ENV_VAR, "")
    return WriteTrace(f"{prefix}{os.getpid()}.jsonl") if prefix else None


TRACE: WriteTrace | None = _from_environment()

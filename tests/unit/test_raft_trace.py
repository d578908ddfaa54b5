"""The opt-in write trace: off unless MESHFED_TRACE_WRITES names a prefix; private JSON lines."""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from meshfed.server.raft import trace


def test_off_by_default(monkeypatch: Any) -> None:
    monkeypatch.delenv(trace.ENV_VAR, raising=False)
    assert trace._from_environment() is None


def test_one_private_file_per_process_with_one_event_per_line(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setenv(trace.ENV_VAR, str(tmp_path / "trace-"))
    writer = trace._from_environment()
    assert writer is not None and writer.path == str(tmp_path / f"trace-{os.getpid()}.jsonl")
    writer.record("commit", index=7, term=3, error=0)
    writer.record("http_register", rid="r1", node="n1", answer=True)
    with open(writer.path) as f:
        events = [json.loads(line) for line in f]
    assert [(e["ev"], e.get("index"), e.get("node")) for e in events] == [("commit", 7, None), ("http_register", None, "n1")]
    assert stat.S_IMODE(os.stat(writer.path).st_mode) == 0o600

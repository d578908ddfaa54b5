"""What a follower does with an AppendEntries whose previous entry it holds (Raft §5.3).

PySyncObj's follower deletes every entry after `prevLogIdx` whenever it has any, then appends the
message's entries, and acknowledges `last entry + 1`. Raft deletes only from the first entry that
*conflicts* (same index, other term). The difference loses acknowledged writes: a leader re-sends
a shorter run after a stale reset (or in chunks of `appendEntriesBatchSizeBytes`); the follower
drops entries it has already acknowledged, while the leader keeps counting them in its match
index and commits with them. If the leader then stops before re-sending, the two followers elect
a leader without the entry. (Found while chasing the paused-leader loss in docs/reliability.md;
the traces then showed that loss has the cause described below, for snapshot chunks.)

`plan_append` rewrites such a message so that the library's handler does the Raft thing:
- entries already held are skipped, so the library truncates only from the first conflict;
- when every entry is already held and the follower's log goes on after them, the message becomes
  an empty one anchored at the follower's own last entry (nothing is deleted), with the commit
  index and the acknowledgement capped at the last entry the leader actually sent: entries after
  it are not known to match the leader's log, so they may neither be committed nor acknowledged.

An AppendEntries *without* `prevLogIdx` (a chunk of a snapshot the leader ships to a follower
whose next entry it no longer holds) anchors nothing in the follower's log, yet the library still
applies the commit rule `min(leaderCommit, own last index)` to it. A follower whose tail is an
old leader's uncommitted entries (a leader paused, replaced, then resumed) thereby commits and
applies them, and answers its clients' waiting proposals with success, before the snapshot's
last chunk replaces its state without them: acknowledged writes that no replica keeps.
`plan_unanchored` holds such a message's commit index at the follower's own; installing the
snapshot then moves it to the snapshot's last index (server/raft/node.py).

Pure: the caller passes how to read its log, so the rule is tested without sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

TermAt = Callable[[int], "int | None"]  # term of the local entry at an index, None if not held


@dataclass(frozen=True)
class AppendPlan:
    message: dict[str, Any]  # what the library's handler should see
    ack_cap: int | None = None  # highest next-index the reply may claim; None: the library's own


def plan_append(message: dict[str, Any], term_at: TermAt, last_index: int) -> AppendPlan:
    """Decide how the follower handles `message`; see the module docstring for why."""
    prev_idx, prev_term = message.get("prevLogIdx"), message.get("prevLogTerm")
    if "transmission" in message or prev_idx is None or term_at(prev_idx) != prev_term:
        return AppendPlan(message)  # chunked entry, or a mismatch: the library answers with a reset
    entries: Sequence[Any] = message.get("entries") or []
    held = 0
    while held < len(entries) and term_at(entries[held][1]) == entries[held][2]:
        held += 1
    if held < len(entries):
        if held == 0:
            return AppendPlan(message)
        anchor = entries[held - 1]
        return AppendPlan({**message, "prevLogIdx": anchor[1], "prevLogTerm": anchor[2], "entries": list(entries[held:])})
    sent_up_to = entries[-1][1] if entries else prev_idx
    if last_index == sent_up_to and not entries:
        return AppendPlan(message)  # a plain heartbeat at our tip: nothing to protect
    return AppendPlan(
        {
            **message,
            "prevLogIdx": last_index,
            "prevLogTerm": term_at(last_index),
            "entries": [],
            "commit_index": min(message.get("commit_index", 0), sent_up_to),
        },
        ack_cap=sent_up_to + 1,
    )


def plan_unanchored(message: dict[str, Any], commit_index: int) -> AppendPlan:
    """An AppendEntries without `prevLogIdx` (a snapshot chunk): it may not advance the commit
    index, because nothing in it says which of the follower's entries match the leader's log."""
    if "prevLogIdx" in message or message.get("commit_index", 0) <= commit_index:
        return AppendPlan(message)
    return AppendPlan({**message, "commit_index": commit_index})

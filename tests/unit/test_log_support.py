"""LogCommandSupport: a leader proposes a newer log command only when every member can apply it.

A server of an older version rejects an entry it cannot decode and misses what it wrote, so any
member that does not say yes (an old server answers "unknown method", a down one nothing) means
the older command."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from meshfed.fsm.log_entries import TAG_FEDERATION_STATE_BATCH_UPSERT, known_tags
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.leader import log_support
from meshfed.server.leader.log_support import LogCommandSupport, lacking

TAG = TAG_FEDERATION_STATE_BATCH_UPSERT


class Members:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers  # address -> tag list, or an exception to raise
        self.calls: list[tuple[str, str]] = []

    def addresses(self) -> list[str]:
        return list(self.answers)

    async def call(self, address: str, method: str, header: RequestHeader, body: Any,
                   timeout: float) -> tuple[QueryMeta, Any]:
        self.calls.append((address, method))
        answer = self.answers[address]
        if isinstance(answer, Exception):
            raise answer
        return QueryMeta(index=1), answer


def run(support: LogCommandSupport) -> bool:
    return asyncio.run(support.all_support(TAG))


def test_this_build_knows_the_batch_command() -> None:
    assert TAG in known_tags()


def test_every_member_listing_the_tag_is_a_yes() -> None:
    members = Members({"10.0.0.2:8300": sorted(known_tags()), "10.0.0.3:8300": [TAG]})
    assert run(LogCommandSupport(members=members.addresses, call=members.call))
    assert sorted(members.calls) == [("10.0.0.2:8300", "Status/LogCommands"), ("10.0.0.3:8300", "Status/LogCommands")]


@pytest.mark.parametrize("answer", [
    RPCError(grpc.StatusCode.UNIMPLEMENTED, "unknown method Status/LogCommands"),  # an older version
    RPCError(grpc.StatusCode.UNAVAILABLE, "connection refused"),  # down: it may apply the log later
    ["fed.set/1"],  # up, without the tag
    None,
])
def test_any_member_not_saying_yes_is_a_no(answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    members = Members({"10.0.0.2:8300": [TAG], "10.0.0.3:8300": answer})
    assert not run(LogCommandSupport(members=members.addresses, call=members.call))
    assert "10.0.0.3:8300" in caplog.text and TAG in caplog.text


def test_answers_are_kept_per_membership_for_a_while() -> None:
    members = Members({"10.0.0.2:8300": [TAG]})
    now = [100.0]
    support = LogCommandSupport(members=members.addresses, call=members.call, clock=lambda: now[0])
    assert run(support) and run(support)
    assert len(members.calls) == 1  # one question per resync, not one per batch
    members.answers["10.0.0.4:8300"] = RPCError(grpc.StatusCode.UNIMPLEMENTED, "unknown method")
    assert not run(support)  # a new member is asked at once
    del members.answers["10.0.0.4:8300"]
    now[0] += log_support.CACHE_SECONDS + 1
    calls = len(members.calls)
    assert run(support) and len(members.calls) == calls + 1  # asked again once the answer is old


def test_lacking_lists_the_members_without_the_tag() -> None:
    assert lacking({"a": [TAG], "b": ["x"], "c": OSError()}, TAG) == ["b", "c"]
    assert lacking({}, TAG) == []

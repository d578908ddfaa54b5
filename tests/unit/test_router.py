"""Router: where an RPC is served (DESIGN §6, Consul's ForwardRPC), with fake Raft, state and pool.

Each test pins one rule of the forwarding order: cross-DC first, then leader forwarding for writes
and non-stale reads, then holding for a leader up to RPC_HOLD_TIMEOUT with the same request id.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from meshfed.fsm.records import ServerInfo
from meshfed.rpc.errors import ERR_NO_LEADER, ERR_NO_PATH, RPCError, invalid, not_found, unavailable
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.raft import RaftError
from meshfed.server.requests import router as router_module
from meshfed.server.requests.router import (
    HOLD_REASONS,
    MAX_FORWARD_HOPS,
    NON_BLOCKING_RPC_TIMEOUT,
    RPC_HOLD_TIMEOUT,
    Router,
    leader_moved,
    rpc_timeout,
)
from tests.scaling import assert_linear, timed

LEADER_RAFT = "10.0.0.2:8300"
LEADER_RPC = "10.0.0.2:8502"
NEW_LEADER_RAFT = "10.0.0.1:8300"
NEW_LEADER_RPC = "10.0.0.1:8502"
LOCAL_ANSWER = (QueryMeta(index=3), "local")
REMOTE_ANSWER = (QueryMeta(index=9), "remote")


@dataclass
class FakeRaft:
    leading: bool = False
    leader_address: str | None = LEADER_RAFT
    contact: float = 0.01

    def is_leader(self) -> bool:
        return self.leading

    def leader(self) -> str | None:
        return self.leader_address

    def last_contact(self) -> float:
        return self.contact


class FakeState:
    def __init__(self) -> None:
        self.rows = [
            ServerInfo("s1", "dc1", "10.0.0.1:8300", "10.0.0.1:8502", "10.0.0.1:8500"),
            # same raft address in another DC must never be picked as our leader
            ServerInfo("x2", "dc2", LEADER_RAFT, "10.9.9.9:8502", "10.9.9.9:8500"),
            ServerInfo("s2", "DC1", LEADER_RAFT, LEADER_RPC, "10.0.0.2:8500"),
        ]

    def servers(self) -> tuple[int, list[ServerInfo]]:
        return 4, list(self.rows)


@dataclass
class FakePool:
    answers: list[Any] = field(default_factory=list)  # exceptions to raise, then REMOTE_ANSWER
    calls: list[tuple[str, str, RequestHeader, Any, float]] = field(default_factory=list)
    discarded: list[tuple[str, str]] = field(default_factory=list)  # drops asked for after transport failures

    def drop_if_failing(self, address: str, server_name: str = "") -> bool:
        self.discarded.append((address, server_name))
        return True

    async def call(
        self, address: str, method: str, header: RequestHeader, body: Any, *, timeout: float, server_name: str = ""
    ) -> tuple[QueryMeta, Any]:
        self.calls.append((address, method, header, body, timeout))
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
        return REMOTE_ANSWER


class Local:
    """The local handler: records calls, raises the queued failures first."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> tuple[QueryMeta, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return LOCAL_ANSWER


def make(raft: FakeRaft | None = None, pool: FakePool | None = None) -> tuple[Router, FakeRaft, FakePool, list[str]]:
    raft = raft or FakeRaft()
    pool = pool or FakePool()
    forwards: list[str] = []
    router = Router(datacenter="dc1", raft=raft, state=FakeState(), pool=pool, on_forward=forwards.append)  # type: ignore[arg-type]
    return router, raft, pool, forwards


@pytest.fixture
def short_hold(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(router_module, "RPC_HOLD_TIMEOUT", 0.3)
    return 0.3


def test_rpc_timeout_covers_the_blocking_wait_plus_the_hold() -> None:
    assert rpc_timeout(RequestHeader()) == NON_BLOCKING_RPC_TIMEOUT + RPC_HOLD_TIMEOUT
    assert rpc_timeout(RequestHeader(min_query_index=1, max_query_time=16)) == 17 + RPC_HOLD_TIMEOUT
    assert rpc_timeout(RequestHeader(min_query_index=1)) == 300 * 17 / 16 + RPC_HOLD_TIMEOUT
    assert rpc_timeout(RequestHeader(min_query_index=1, max_query_time=10_000)) == 600 * 17 / 16 + RPC_HOLD_TIMEOUT


def test_leader_serves_writes_and_reads_locally() -> None:
    async def scenario() -> None:
        router, _, pool, forwards = make(FakeRaft(leading=True))
        for write in (True, False):
            local = Local()
            assert await router.serve("Catalog/Register", RequestHeader(), {}, local, write=write) == LOCAL_ANSWER
            assert local.calls == 1
        assert pool.calls == [] and forwards == []

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "header, write",
    [
        (RequestHeader(request_id="r1"), True),
        (RequestHeader(), False),
        (RequestHeader(require_consistent=True), False),
        (RequestHeader(allow_stale=True, request_id="r2"), True),  # stale means nothing for a write
    ],
)
def test_follower_forwards_to_the_leader_rpc_address_found_by_raft_address(header: RequestHeader, write: bool) -> None:
    async def scenario() -> None:
        router, _, pool, forwards = make()
        local = Local()
        answer = await router.serve("FederationState/List", header, {"x": 1}, local, write=write)
        assert answer == REMOTE_ANSWER
        assert local.calls == 0
        ((address, method, sent, body, timeout),) = pool.calls
        assert (address, method, body) == (LEADER_RPC, "FederationState/List", {"x": 1})
        assert sent.hops == header.hops + 1 and sent.request_id == header.request_id
        assert sent.require_consistent == header.require_consistent
        assert timeout == rpc_timeout(header)
        assert forwards == ["leader"]

    asyncio.run(scenario())


def test_stale_reads_are_local_only_after_leader_contact(short_hold: float) -> None:
    async def scenario() -> None:
        router, raft, pool, _ = make(FakeRaft(contact=float("inf")))
        local = Local()
        assert await router.serve("Catalog/Nodes", RequestHeader(allow_stale=True), None, local, write=False) == REMOTE_ANSWER
        assert local.calls == 0 and len(pool.calls) == 1
        raft.contact = 12.5  # heard from a leader once, however long ago
        raft.leader_address = None  # and it does not even need a leader now
        assert await router.serve("Catalog/Nodes", RequestHeader(allow_stale=True), None, local, write=False) == LOCAL_ANSWER
        assert local.calls == 1 and len(pool.calls) == 1

    asyncio.run(scenario())


def test_no_leader_holds_for_the_hold_timeout_then_fails_with_no_cluster_leader(short_hold: float) -> None:
    async def scenario() -> None:
        router, _, pool, _ = make(FakeRaft(leader_address=None))
        started = time.monotonic()
        with pytest.raises(RPCError) as caught:
            await router.serve("Catalog/Register", RequestHeader(request_id="r"), {}, Local(), write=True)
        elapsed = time.monotonic() - started
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert caught.value.message.startswith(ERR_NO_LEADER)
        assert short_hold <= elapsed < short_hold + short_hold / 16 + 1.0
        assert pool.calls == []

    asyncio.run(scenario())


def test_leader_whose_rpc_address_is_unknown_counts_as_no_leader(short_hold: float) -> None:
    async def scenario() -> None:
        router, _, pool, _ = make(FakeRaft(leader_address="10.0.0.7:8300"))
        with pytest.raises(RPCError, match=ERR_NO_LEADER):
            await router.serve("Catalog/Nodes", RequestHeader(), None, Local(), write=False)
        assert pool.calls == []

    asyncio.run(scenario())


def test_a_leader_elected_during_the_hold_gets_the_call(short_hold: float) -> None:
    async def scenario() -> None:
        router, raft, pool, _ = make(FakeRaft(leader_address=None))

        def elect() -> None:
            raft.leader_address = LEADER_RAFT

        asyncio.get_running_loop().call_later(0.05, elect)
        answer = await router.serve("Catalog/Register", RequestHeader(request_id="r"), {}, Local(), write=True)
        assert answer == REMOTE_ANSWER and len(pool.calls) == 1

    asyncio.run(scenario())


def test_maybe_applied_raft_error_is_retried_with_the_same_request_id(short_hold: float) -> None:
    """Leadership moved while our write was in flight: the retry goes to the new leader and keeps
    the request id, so the state machine applies the write at most once."""

    async def scenario() -> None:
        raft = FakeRaft(leading=True)
        router, _, pool, _ = make(raft)

        class SteppingDown(Local):
            async def __call__(self) -> tuple[QueryMeta, Any]:
                raft.leading = False
                return await super().__call__()

        local = SteppingDown(RaftError("leadership changed during commit", maybe_applied=True))
        header = RequestHeader(request_id="write-42")
        answer = await router.serve("FederationState/Apply", header, {"op": "upsert"}, local, write=True)
        assert answer == REMOTE_ANSWER
        assert local.calls == 1
        ((_, _, sent, _, _),) = pool.calls
        assert sent.request_id == "write-42" and sent.hops == 1

    asyncio.run(scenario())


def test_raft_error_on_the_leader_is_retried_locally(short_hold: float) -> None:
    async def scenario() -> None:
        router, _, pool, _ = make(FakeRaft(leading=True))
        local = Local(RaftError("raft queue full", maybe_applied=False), RaftError("timed out", maybe_applied=True))
        assert await router.serve("Catalog/Register", RequestHeader(request_id="r"), {}, local, write=True) == LOCAL_ANSWER
        assert local.calls == 3 and pool.calls == []

    asyncio.run(scenario())


def test_persistent_raft_error_ends_as_no_cluster_leader_with_the_cause(short_hold: float) -> None:
    async def scenario() -> None:
        router, _, _, _ = make(FakeRaft(leading=True))
        failures = [RaftError("not the leader", maybe_applied=False) for _ in range(1000)]
        with pytest.raises(RPCError) as caught:
            await router.serve("Catalog/Register", RequestHeader(request_id="r"), {}, Local(*failures), write=True)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert caught.value.message.startswith(ERR_NO_LEADER)
        assert "not the leader" in caught.value.message

    asyncio.run(scenario())


@pytest.mark.parametrize("failure", [not_found("no such thing"), invalid("bad body"), RPCError(grpc.StatusCode.INTERNAL, "x")])
def test_non_unavailable_rpc_errors_propagate_at_once(failure: RPCError) -> None:
    async def scenario() -> None:
        router, _, pool, _ = make(FakeRaft(leading=True))
        local = Local(failure)
        started = time.monotonic()
        with pytest.raises(RPCError) as caught:
            await router.serve("Catalog/Register", RequestHeader(), {}, local, write=True)
        assert caught.value is failure and local.calls == 1
        assert time.monotonic() - started < 0.1

        router, _, pool, _ = make(pool=FakePool(answers=[failure]))
        with pytest.raises(RPCError) as caught:
            await router.serve("Catalog/Nodes", RequestHeader(), None, Local(), write=False)
        assert caught.value is failure and len(pool.calls) == 1

    asyncio.run(scenario())


def test_unavailable_leader_is_retried_until_it_answers(short_hold: float) -> None:
    async def scenario() -> None:
        refused = RPCError(grpc.StatusCode.UNAVAILABLE, "connection refused", transport=True)
        pool = FakePool(answers=[refused, refused])
        router, _, pool, forwards = make(pool=pool)
        header = RequestHeader(request_id="w")
        assert await router.serve("Catalog/Register", header, {}, Local(), write=True) == REMOTE_ANSWER
        assert len(pool.calls) == 3
        assert {call[2].request_id for call in pool.calls} == {"w"}
        assert {call[2].hops for call in pool.calls} == {1}
        assert pool.discarded == [(LEADER_RPC, ""), (LEADER_RPC, "")]  # redial instead of reusing a broken channel

        # An UNAVAILABLE the leader's handler raised ("No cluster leader") is retried too, but the
        # shared channel is healthy and carries other calls: it is not discarded.
        pool = FakePool(answers=[unavailable("No cluster leader")])
        router, _, pool, _ = make(pool=pool)
        assert await router.serve("Catalog/Register", header, {}, Local(), write=True) == REMOTE_ANSWER
        assert pool.discarded == []

    asyncio.run(scenario())


def test_unreachable_leader_fails_after_the_hold_with_the_last_error(short_hold: float) -> None:
    async def scenario() -> None:
        pool = FakePool(answers=[RPCError(grpc.StatusCode.UNAVAILABLE, "connection refused", transport=True) for _ in range(1000)])
        router, _, _, _ = make(pool=pool)
        with pytest.raises(RPCError) as caught:
            await router.serve("Catalog/Register", RequestHeader(), {}, Local(), write=True)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert caught.value.message.startswith(ERR_NO_LEADER)
        assert "connection refused" in caught.value.message

    asyncio.run(scenario())


def test_each_retry_in_the_hold_is_counted_by_its_reason_and_an_exhausted_hold_once(short_hold: float) -> None:
    """The hold hides a leaderless moment from clients; the counts show it to the operator (and a
    call gRPC core cancelled before a handler picked it up is a transport retry here)."""

    async def scenario() -> None:
        refused = RPCError(grpc.StatusCode.UNAVAILABLE, "connection refused", transport=True)
        router, _, _, _ = make(pool=FakePool(answers=[refused, refused, unavailable("No cluster leader")]))
        assert await router.serve("Catalog/Register", RequestHeader(request_id="w"), {}, Local(), write=True) == REMOTE_ANSWER
        leader = FakeRaft(leading=True)
        local = Local(RaftError("raft queue full", maybe_applied=False))
        router_on_leader, _, _, _ = make(leader)
        await router_on_leader.serve("Catalog/Register", RequestHeader(request_id="x"), {}, local, write=True)
        assert +router.hold_retries == {"transport": 2, "unavailable": 1}
        assert +router_on_leader.hold_retries == {"raft": 1}
        assert set(router.hold_retries) == set(HOLD_REASONS)  # every reason on the scrape, at 0 too
        assert router.holds_exhausted == 0

        leaderless, _, _, _ = make(FakeRaft(leader_address=None))
        with pytest.raises(RPCError, match=ERR_NO_LEADER):
            await leaderless.serve("Catalog/Register", RequestHeader(request_id="y"), {}, Local(), write=True)
        assert leaderless.hold_retries["no_leader"] >= 2 and set(+leaderless.hold_retries) == {"no_leader"}
        assert leaderless.holds_exhausted == 1

    asyncio.run(scenario())


def test_cross_dc_without_a_remote_path_is_no_path_to_datacenter() -> None:
    async def scenario() -> None:
        router, _, pool, _ = make(FakeRaft(leading=True))
        local = Local()
        with pytest.raises(RPCError) as caught:
            await router.serve("FederationState/List", RequestHeader(datacenter="dc2"), None, local, write=False)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert caught.value.message == f"{ERR_NO_PATH}: dc2"
        assert local.calls == 0 and pool.calls == []

    asyncio.run(scenario())


def test_cross_dc_goes_through_remote_even_on_the_leader() -> None:
    async def scenario() -> None:
        router, _, pool, forwards = make(FakeRaft(leading=True))
        remote_calls: list[tuple[str, str, RequestHeader, Any, float]] = []

        async def remote(dc: str, method: str, header: RequestHeader, body: Any, timeout: float) -> tuple[QueryMeta, Any]:
            remote_calls.append((dc, method, header, body, timeout))
            return REMOTE_ANSWER

        router.remote = remote
        header = RequestHeader(datacenter="dc2", request_id="w", min_query_index=3, max_query_time=2)
        local = Local()
        assert await router.serve("FederationState/Apply", header, {"b": 1}, local, write=True) == REMOTE_ANSWER
        ((dc, method, sent, body, timeout),) = remote_calls
        assert (dc, method, body) == ("dc2", "FederationState/Apply", {"b": 1})
        assert sent.request_id == "w" and sent.hops == 1 and sent.datacenter == "dc2"
        assert timeout == rpc_timeout(header)
        assert forwards == ["dc2"] and local.calls == 0 and pool.calls == []

    asyncio.run(scenario())


def test_own_datacenter_matches_case_insensitively() -> None:
    async def scenario() -> None:
        router, _, _, _ = make(FakeRaft(leading=True))
        assert await router.serve("Catalog/Nodes", RequestHeader(datacenter="DC1"), None, Local(), write=False) == LOCAL_ANSWER

    asyncio.run(scenario())


def test_hop_limit_stops_a_routing_loop() -> None:
    async def scenario() -> None:
        router, _, pool, _ = make()
        local = Local()
        with pytest.raises(RPCError) as caught:
            await router.serve("Catalog/Nodes", RequestHeader(hops=MAX_FORWARD_HOPS + 1), None, local, write=False)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert "too many" in caught.value.message
        assert local.calls == 0 and pool.calls == []
        # at the limit itself the call still goes through
        assert await router.serve("Catalog/Nodes", RequestHeader(hops=MAX_FORWARD_HOPS), None, local, write=False) == REMOTE_ANSWER

    asyncio.run(scenario())


def test_leader_rpc_address_lookup() -> None:
    router, raft, _, _ = make()
    assert router.leader_rpc_address() == LEADER_RPC
    raft.leader_address = None
    assert router.leader_rpc_address() is None
    raft.leader_address = "10.0.0.1:8300"
    assert router.leader_rpc_address() == "10.0.0.1:8502"


def test_leader_moved_decision() -> None:
    assert not leader_moved(LEADER_RPC, LEADER_RPC, is_leader=False)
    assert leader_moved(LEADER_RPC, NEW_LEADER_RPC, is_leader=False)  # a new leader was elected
    assert leader_moved(LEADER_RPC, None, is_leader=False)  # Raft dropped the silent leader
    assert leader_moved(LEADER_RPC, LEADER_RPC, is_leader=True)  # we won the election ourselves


class SilentLeaderPool(FakePool):
    """Calls to `silent` never answer (a cut-off leader keeps its sockets open); others answer."""

    def __init__(self, silent: str) -> None:
        super().__init__()
        self.silent = silent
        self.cancelled = 0

    async def call(
        self, address: str, method: str, header: RequestHeader, body: Any, *, timeout: float, server_name: str = ""
    ) -> tuple[QueryMeta, Any]:
        if address != self.silent:
            return await super().call(address, method, header, body, timeout=timeout, server_name=server_name)
        self.calls.append((address, method, header, body, timeout))
        try:
            await asyncio.sleep(timeout)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("the silent leader was waited on for the whole forwarding deadline")


def test_write_forwarded_to_a_cut_off_leader_is_resent_to_the_new_leader_with_its_request_id() -> None:
    """Issue #8 item 4: the follower notices the election and re-routes within the hold window."""

    async def scenario() -> None:
        pool = SilentLeaderPool(silent=LEADER_RPC)
        router, raft, _, forwards = make(pool=pool)

        def elect() -> None:
            raft.leader_address = NEW_LEADER_RAFT

        asyncio.get_running_loop().call_later(0.3, elect)
        started = time.monotonic()
        header = RequestHeader(request_id="write-7")
        answer = await router.serve("Catalog/Register", header, {"Node": "n"}, Local(), write=True)
        elapsed = time.monotonic() - started
        assert answer == REMOTE_ANSWER
        assert [call[0] for call in pool.calls] == [LEADER_RPC, NEW_LEADER_RPC]
        assert {call[2].request_id for call in pool.calls} == {"write-7"}
        assert pool.cancelled == 1 and pool.discarded == []  # the channel is not broken, only its peer
        assert elapsed < 0.3 + router_module.LEADER_RECHECK_INTERVAL + RPC_HOLD_TIMEOUT / 16 + 0.3
        assert forwards == ["leader", "leader"]

    asyncio.run(scenario())


def test_forwarded_call_to_a_leader_raft_dropped_ends_as_no_cluster_leader_in_the_hold(short_hold: float) -> None:
    async def scenario() -> None:
        pool = SilentLeaderPool(silent=LEADER_RPC)
        router, raft, _, _ = make(pool=pool)
        asyncio.get_running_loop().call_later(0.1, lambda: setattr(raft, "leader_address", None))
        started = time.monotonic()
        with pytest.raises(RPCError) as caught:
            await router.serve("Catalog/Register", RequestHeader(request_id="w"), {}, Local(), write=True)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert caught.value.message.startswith(ERR_NO_LEADER)
        assert time.monotonic() - started < short_hold + 1.0
        assert pool.cancelled == 1

    asyncio.run(scenario())


def test_a_slow_answer_from_a_steady_leader_is_waited_for() -> None:
    async def scenario() -> None:
        class SlowPool(FakePool):
            async def call(self, *args: Any, **kwargs: Any) -> tuple[QueryMeta, Any]:
                await asyncio.sleep(router_module.LEADER_RECHECK_INTERVAL * 3)
                return await super().call(*args, **kwargs)

        router, _, pool, _ = make(pool=SlowPool())
        assert await router.serve("Catalog/Nodes", RequestHeader(), None, Local(), write=False) == REMOTE_ANSWER
        assert len(pool.calls) == 1

    asyncio.run(scenario())


def test_many_calls_in_flight_share_one_watcher_and_all_move_to_the_new_leader() -> None:
    async def scenario() -> None:
        pool = SilentLeaderPool(silent=LEADER_RPC)
        router, raft, _, _ = make(pool=pool)
        asyncio.get_running_loop().call_later(0.3, lambda: setattr(raft, "leader_address", NEW_LEADER_RAFT))
        headers = [RequestHeader(request_id=f"w{n}") for n in range(50)]
        answers = await asyncio.gather(
            *(router.serve("Catalog/Register", header, {}, Local(), write=True) for header in headers)
        )
        assert answers == [REMOTE_ANSWER] * 50 and pool.cancelled == 50
        resent = [call[2].request_id for call in pool.calls if call[0] == NEW_LEADER_RPC]
        assert sorted(resent) == sorted(header.request_id for header in headers)
        await asyncio.sleep(router_module.LEADER_RECHECK_INTERVAL * 2)
        assert not router._moved and router._watcher is not None and router._watcher.done()

    asyncio.run(scenario())


class FakeStream:
    def __init__(self) -> None:
        self.closed: str | None = None
        self.callbacks: list[Any] = []

    def on_close(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def close(self, reason: str = "") -> None:
        if self.closed is None:
            self.closed = reason
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


class StreamPool(FakePool):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[tuple[str, str, RequestHeader, Any]] = []

    async def open_stream(self, address: str, method: str, header: RequestHeader, first: Any, *,
                          server_name: str = "") -> FakeStream:
        self.opened.append((address, method, header, first))
        return FakeStream()


def test_a_stream_reaching_a_follower_is_opened_on_the_leader_and_closed_when_the_leader_moves() -> None:
    async def scenario() -> None:
        pool = StreamPool()
        router, raft, _, forwards = make(pool=pool)
        stream = await router.open_leader_stream("Peering/StreamResources", RequestHeader(hops=1), {"PeerID": "p"})
        assert isinstance(stream, FakeStream) and forwards == ["leader"]
        assert [(a, m, h.hops, f) for a, m, h, f in pool.opened] == [
            (LEADER_RPC, "Peering/StreamResources", 2, {"PeerID": "p"})]
        raft.leader_address = NEW_LEADER_RAFT  # an election: the relay must not keep the old leader
        await asyncio.sleep(router_module.LEADER_RECHECK_INTERVAL * 2)
        assert stream.closed is not None and router_module.ERR_LEADER_MOVED in stream.closed

        steady = await router.open_leader_stream("Peering/StreamResources", RequestHeader(), {})
        assert isinstance(steady, FakeStream)
        steady.close()  # the relay ended on its own: nothing left to watch
        assert not router._moved

        raft.leading = True
        assert await router.open_leader_stream("Peering/StreamResources", RequestHeader(), {}) is None
        raft.leading, raft.leader_address = False, None
        with pytest.raises(RPCError) as no_leader:
            await router.open_leader_stream("Peering/StreamResources", RequestHeader(), {})
        assert no_leader.value.message == ERR_NO_LEADER
        with pytest.raises(RPCError, match="forwarded too many times"):
            await router.open_leader_stream("Peering/StreamResources", RequestHeader(hops=MAX_FORWARD_HOPS + 1), {})

    asyncio.run(scenario())


class GatedPool(FakePool):
    """Every call waits for the gate, then answers."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def call(self, *args: Any, **kwargs: Any) -> tuple[QueryMeta, Any]:
        await self.gate.wait()
        return await super().call(*args, **kwargs)


def test_releasing_shared_forwarded_callers_costs_each_caller_the_same_however_many_they_are() -> None:
    """10,000 waiters behind one follower took 5 s to release once their shared call answered:
    every caller waited on one "leader moved" future shared by all of them, and asyncio.wait
    removes its callback from that future on return, a scan of the callers left (n² in all)."""

    async def release_seconds(callers: int) -> float:
        pool = GatedPool()
        router, _, _, _ = make(pool=pool)
        header = RequestHeader(min_query_index=5, max_query_time=30)
        waiting = [asyncio.ensure_future(router.serve("Catalog/ListServices", header, {}, Local(), write=False))
                   for _ in range(callers)]
        while router.forwarded_blocking_callers < callers:
            await asyncio.sleep(0.01)
        async with timed() as watch:
            pool.gate.set()
            answers = await asyncio.gather(*waiting)
        assert answers == [REMOTE_ANSWER] * callers and len(pool.calls) == 1
        return watch.seconds

    asyncio.run(assert_linear(release_seconds))

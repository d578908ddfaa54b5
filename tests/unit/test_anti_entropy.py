"""Mesh-gateway anti-entropy (reference/federation.md §6.2), decisions and loop.

The loop runs against in-memory twins of GatewaySource and StateSink that share a fake clock and
an event schedule: sleeping or waiting advances the clock and fires the catalog changes scheduled
in that window, so minutes of behaviour run in milliseconds and every write time is exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from meshfed.fsm.records import (
    KIND_MESH_GATEWAY,
    META_WAN_FEDERATION,
    STATUS_CRITICAL,
    STATUS_PASSING,
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
)
from meshfed.replication.anti_entropy import (
    BACKOFF_MAX,
    DEFAULT_REFRESH_INTERVAL,
    DEFAULT_SYNC_INTERVAL,
    FederationStateAntiEntropy,
    debounce_delay,
    desired_state,
    failure_backoff,
    needs_sync,
)

DC = "dc2"


def gateway(name: str = "gw1", status: str = STATUS_PASSING, index: int = 0, updated_at: float = 0.0) -> CheckServiceNode:
    return CheckServiceNode(
        node=Node(node=name, address="10.0.0.5", datacenter=DC, create_index=index, modify_index=index),
        service=NodeService(
            id="mesh-gateway", service="mesh-gateway", kind=KIND_MESH_GATEWAY, port=8443,
            meta={META_WAN_FEDERATION: "1"}, create_index=index, modify_index=index,
        ),
        checks=(
            HealthCheck(node=name, check_id="ttl", status=status, type="ttl", ttl="30s",
                        status_updated_at=updated_at, create_index=index, modify_index=index),
        ),
    )


# ---- pure decisions -----------------------------------------------------------------------------


def test_debounce_delay() -> None:
    """§6.2 step 2: a sync that finished less than `interval` ago delays the next by the remainder."""
    assert debounce_delay(None, 100.0, 5.0) == 0.0
    assert debounce_delay(100.0, 100.0, 5.0) == 5.0
    assert debounce_delay(100.0, 103.5, 5.0) == 1.5
    assert debounce_delay(100.0, 105.0, 5.0) == 0.0
    assert debounce_delay(100.0, 900.0, 5.0) == 0.0


def test_failure_backoff_doubles_from_two_seconds_to_the_cap() -> None:
    """§6.2 retryLoopBackoff: 2, 4, 8 ... up to 256 s, by consecutive failures."""
    assert [failure_backoff(n) for n in range(0, 10)] == [0, 2, 4, 8, 16, 32, 64, 128, 256, 256]
    assert failure_backoff(10_000) == BACKOFF_MAX == 256


def test_needs_sync_when_the_row_is_missing_even_with_zero_gateways() -> None:
    """§6.2 note: `prev == nil` always triggers a write, so every DC has a record."""
    assert needs_sync(None, desired_state(DC, []))
    assert not needs_sync(desired_state(DC, []), desired_state(DC, []))


def test_needs_sync_ignores_raft_indexes_and_timestamps() -> None:
    """§6.2 step 5: IsSame compares content, not indexes, UpdatedAt or check update times."""
    stored = FederationState(
        datacenter=DC, mesh_gateways=(gateway(index=17, updated_at=123.0),), updated_at="2024-01-01T00:00:00Z",
        primary_modify_index=40, create_index=30, modify_index=41,
    )
    assert not needs_sync(stored, desired_state(DC, [gateway(index=99, updated_at=456.0)]))


def test_needs_sync_on_any_content_change() -> None:
    stored = desired_state(DC, [gateway()])
    assert needs_sync(stored, desired_state(DC, [gateway(status=STATUS_CRITICAL)]))
    assert needs_sync(stored, desired_state(DC, [gateway(name="gw2")]))
    assert needs_sync(stored, desired_state(DC, [gateway(), gateway(name="gw2")]))
    assert needs_sync(stored, desired_state(DC, []))
    moved = dataclasses.replace(gateway(), service=dataclasses.replace(gateway().service, port=9443))
    assert needs_sync(stored, desired_state(DC, [moved]))
    # order matters: the desired state keeps catalog order
    two = desired_state(DC, [gateway(), gateway(name="gw2")])
    assert needs_sync(two, desired_state(DC, [gateway(name="gw2"), gateway()]))


@given(
    st.lists(st.tuples(st.sampled_from(["gw1", "gw2", "gw3"]), st.sampled_from([STATUS_PASSING, STATUS_CRITICAL])),
             max_size=3),
    st.integers(0, 10**6), st.integers(0, 10**6), st.floats(0, 1e9), st.text(max_size=30),
)
def test_needs_sync_is_false_for_the_same_content_with_any_bookkeeping(
    members: list[tuple[str, str]], index_a: int, index_b: int, updated: float, updated_at: str
) -> None:
    stored = FederationState(
        datacenter=DC,
        mesh_gateways=tuple(gateway(name, status, index_a, updated) for name, status in members),
        updated_at=updated_at, primary_modify_index=index_a, create_index=index_a, modify_index=index_b,
    )
    desired = desired_state(DC, [gateway(name, status, index_b) for name, status in members])
    assert not needs_sync(stored, desired)
    assert desired.datacenter == DC and desired.updated_at == ""


# ---- in-memory twins ------------------------------------------------------------------------------


@dataclass
class World:
    """A fake clock with scheduled catalog changes; `sleep` advances time and fires what is due."""

    now: float = 0.0
    events: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    _order: itertools.count = field(default_factory=itertools.count)

    def clock(self) -> float:
        return self.now

    def at(self, when: float, change: Callable[[], None]) -> None:
        heapq.heappush(self.events, (when, next(self._order), change))

    def fire_next_until(self, deadline: float) -> bool:
        if not self.events or self.events[0][0] > deadline:
            return False
        when, _, change = heapq.heappop(self.events)
        self.now = max(self.now, when)
        change()
        return True

    async def sleep(self, seconds: float) -> None:
        deadline = self.now + seconds
        while self.fire_next_until(deadline):
            pass
        self.now = deadline
        await asyncio.sleep(0)  # stay cancellable, as a real sleep is


@dataclass
class Catalog:
    """GatewaySource twin: the local store's own row, its mesh gateways and one change index."""

    world: World
    index: int = 1
    row: FederationState | None = None
    gateways: list[CheckServiceNode] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)

    def view(self) -> tuple[int, FederationState | None, list[CheckServiceNode]]:
        return self.index, self.row, list(self.gateways)

    def set_gateways(self, gateways: list[CheckServiceNode]) -> Callable[[], None]:
        def change() -> None:
            self.gateways = list(gateways)
            self.index += 1

        return change

    async def wait_change(self, index: int, timeout: float) -> None:
        self.waits.append(timeout)
        deadline = self.world.now + timeout
        while self.index <= index and self.world.fire_next_until(deadline):
            pass
        if self.index <= index:
            self.world.now = deadline
        await asyncio.sleep(0)


@dataclass
class Sink:
    """StateSink twin: a successful upsert lands in the catalog's own row (as Raft would)."""

    catalog: Catalog
    failures: int = 0
    writes: list[tuple[float, FederationState]] = field(default_factory=list)

    async def upsert(self, state: FederationState) -> None:
        self.writes.append((self.catalog.world.now, state))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("primary unreachable")
        self.catalog.index += 1
        self.catalog.row = dataclasses.replace(state, modify_index=self.catalog.index)

    @property
    def times(self) -> list[float]:
        return [when for when, _ in self.writes]


def make(
    *, failures: int = 0, row: FederationState | None = None, gateways: list[CheckServiceNode] | None = None,
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
) -> tuple[FederationStateAntiEntropy, World, Catalog, Sink, list[str]]:
    world = World()
    catalog = Catalog(world, row=row, gateways=list(gateways or []))
    sink = Sink(catalog, failures=failures)
    outcomes: list[str] = []
    loop = FederationStateAntiEntropy(
        DC, catalog, sink, sync_interval=DEFAULT_SYNC_INTERVAL, refresh_interval=refresh_interval,
        clock=world.clock, sleep=world.sleep, on_outcome=outcomes.append,
    )
    return loop, world, catalog, sink, outcomes


async def run_until(loop: FederationStateAntiEntropy, world: World, until: float, max_steps: int = 1000) -> int:
    """Step the loop until the fake clock passes `until`; the step count exposes a hot loop."""
    steps = 0
    while world.now < until:
        steps += 1
        assert steps <= max_steps, f"hot loop: {steps} rounds by t={world.now}"
        await loop.step()
    return steps


# ---- the loop ------------------------------------------------------------------------------------


def test_first_round_writes_even_with_zero_gateways() -> None:
    """§6.2 note: with no row yet the DC writes one, gateways or not."""

    async def scenario() -> None:
        loop, world, _, sink, outcomes = make()
        await loop.step()
        assert sink.writes == [(0.0, FederationState(datacenter=DC, mesh_gateways=()))]
        assert outcomes == ["synced"] and loop.last_sync == 0.0

    asyncio.run(scenario())


def test_unchanged_state_writes_nothing_and_waits_for_a_change() -> None:
    """§6.2 step 5: `prev.IsSame(curr)` skips the write; the loop blocks on the catalog instead."""

    async def scenario() -> None:
        row = desired_state(DC, [gateway(index=3)])
        loop, world, catalog, sink, outcomes = make(row=row, gateways=[gateway(index=8)])
        world.now = 1.0
        await loop.step()
        assert sink.writes == [] and outcomes == ["unchanged"]
        assert catalog.waits == [DEFAULT_REFRESH_INTERVAL - 1.0]
        steps = await run_until(loop, world, DEFAULT_REFRESH_INTERVAL - 1)
        assert sink.writes == [] and steps <= 2

    asyncio.run(scenario())


def test_a_change_wakes_the_loop_and_is_written() -> None:
    async def scenario() -> None:
        loop, world, catalog, sink, _ = make()
        world.at(30.0, catalog.set_gateways([gateway()]))
        steps = await run_until(loop, world, 100.0)
        assert sink.times == [0.0, 30.0]
        assert sink.writes[-1][1].mesh_gateways == (gateway(),)
        assert steps < 10

    asyncio.run(scenario())


def test_changes_during_the_debounce_make_exactly_one_write_after_the_interval() -> None:
    """§6.2 step 2 (Consul PR #23196): a flapping check must not drive a write per flap."""

    async def scenario() -> None:
        loop, world, catalog, sink, _ = make()
        world.at(1.0, catalog.set_gateways([gateway(status=STATUS_CRITICAL)]))
        world.at(2.0, catalog.set_gateways([gateway(status=STATUS_PASSING)]))
        world.at(3.0, catalog.set_gateways([gateway(status=STATUS_CRITICAL)]))
        steps = await run_until(loop, world, 200.0)
        assert sink.times == [0.0, DEFAULT_SYNC_INTERVAL]
        assert sink.writes[-1][1].mesh_gateways == (gateway(status=STATUS_CRITICAL),)
        assert steps < 10

    asyncio.run(scenario())


def test_a_flapping_gateway_is_written_at_most_once_per_sync_interval() -> None:
    async def scenario() -> None:
        loop, world, catalog, sink, _ = make()
        for tick in range(1, 240):  # flaps every 0.25 s for a minute
            status = STATUS_CRITICAL if tick % 2 else STATUS_PASSING
            world.at(tick * 0.25, catalog.set_gateways([gateway(status=status)]))
        steps = await run_until(loop, world, 120.0)
        gaps = [b - a for a, b in itertools.pairwise(sink.times)]
        assert gaps and min(gaps) >= DEFAULT_SYNC_INTERVAL
        assert len(sink.writes) <= 60 / DEFAULT_SYNC_INTERVAL + 2
        assert catalog.row is not None and not needs_sync(catalog.row, desired_state(DC, catalog.gateways))
        # one round per flap at most: waking on a change and finding nothing to do is fine, spinning is not
        assert steps <= 240 + len(sink.writes) + 5

    asyncio.run(scenario())


def test_sink_failures_back_off_2_4_8_then_recover() -> None:
    """§6.2 retryLoopBackoff: sleep 2, 4, 8 ... after consecutive failures, reset on success."""

    async def scenario() -> None:
        loop, world, _, sink, outcomes = make(failures=3)
        await run_until(loop, world, 100.0)
        assert sink.times == [0.0, 2.0, 6.0, 14.0]
        assert outcomes[:4] == ["error", "error", "error", "synced"]
        assert loop.failures == 0 and loop.last_error == "" and loop.last_sync == 14.0

    asyncio.run(scenario())


def test_failures_are_counted_and_the_backoff_is_capped() -> None:
    async def scenario() -> None:
        loop, world, _, sink, _ = make(failures=10**6)
        await run_until(loop, world, 2000.0)
        gaps = [b - a for a, b in itertools.pairwise(sink.times)]
        assert gaps[:8] == [2, 4, 8, 16, 32, 64, 128, 256]
        assert set(gaps[8:]) == {256}
        assert loop.failures == len(sink.writes) and "primary unreachable" in loop.last_error

    asyncio.run(scenario())


def test_refresh_reasserts_the_row_even_when_nothing_changed() -> None:
    """DESIGN §8: the primary prunes rows not refreshed for the TTL, so AE re-asserts them."""

    async def scenario() -> None:
        row = desired_state(DC, [gateway()])
        loop, world, _, sink, outcomes = make(row=row, gateways=[gateway()], refresh_interval=600.0)
        steps = await run_until(loop, world, 1900.0)
        assert sink.times == [600.0, 1200.0, 1800.0]
        assert all(state == row for _, state in sink.writes)
        assert outcomes.count("synced") == 3
        assert steps < 20

    asyncio.run(scenario())


def test_refresh_counts_from_the_last_write() -> None:
    async def scenario() -> None:
        loop, world, catalog, sink, _ = make(refresh_interval=600.0)
        world.at(100.0, catalog.set_gateways([gateway()]))
        await run_until(loop, world, 800.0)
        assert sink.times == [0.0, 100.0, 700.0]

    asyncio.run(scenario())


def test_run_stops_when_cancelled() -> None:
    async def scenario() -> None:
        loop, world, _, sink, _ = make()
        task = asyncio.create_task(loop.run())
        for _ in range(50):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        assert sink.times[:2] == [0.0, DEFAULT_REFRESH_INTERVAL]  # the fake clock flies; the rhythm holds

    asyncio.run(scenario())

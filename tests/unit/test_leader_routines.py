"""LeaderRoutines: leader-only work starts after a barrier, survives crashes, and stops on step-down
(reference/federation.md §6.1: routines "stop on leadership loss"; Consul #20665 for the gauges)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from meshfed.server.leader import routines as leader_module
from meshfed.server.leader.routines import LeaderRoutines


@pytest.fixture(autouse=True)
def fast_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leader_module, "ROUTINE_RESTART_DELAY", 0.01)
    monkeypatch.setattr(leader_module, "BARRIER_RETRY_DELAY", 0.01)


@dataclass
class Probe:
    """A routine that records its starts and exits, and crashes as told before settling."""

    crashes: list[BaseException] = field(default_factory=list)
    starts: int = 0
    cancelled: int = 0
    finish: bool = False

    async def __call__(self) -> None:
        self.starts += 1
        if self.crashes:
            raise self.crashes.pop(0)
        if self.finish:
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


@dataclass
class Barrier:
    """Blocks until released; fails the first `failures` calls."""

    failures: int = 0
    calls: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self) -> int:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("no quorum yet")
        await self.release.wait()
        return 7


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def guarded() -> None:
        await asyncio.wait_for(scenario(), 10)
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        assert leftovers == [], f"tasks leaked: {leftovers}"

    asyncio.run(guarded())


def test_routines_start_only_after_the_barrier_commits() -> None:
    async def scenario() -> None:
        barrier = Barrier()
        routines = LeaderRoutines(barrier)
        a, b = Probe(), Probe()
        routines.add("a", a)
        routines.add("b", b)
        routines.on_leadership(True)
        await until(lambda: barrier.calls == 1)
        await asyncio.sleep(0.05)
        assert (a.starts, b.starts, routines.leading) == (0, 0, False)
        barrier.release.set()
        await until(lambda: a.starts == 1 and b.starts == 1)
        assert routines.leading
        await routines.stop()

    run(scenario)


def test_a_repeated_gain_of_leadership_does_not_start_twice() -> None:
    async def scenario() -> None:
        barrier = Barrier()
        barrier.release.set()
        routines = LeaderRoutines(barrier)
        probe = Probe()
        routines.add("p", probe)
        routines.on_leadership(True)
        routines.on_leadership(True)
        await until(lambda: probe.starts == 1)
        routines.on_leadership(True)
        await asyncio.sleep(0.05)
        assert probe.starts == 1 and barrier.calls == 1
        await routines.stop()

    run(scenario)


def test_a_crashing_routine_is_restarted_without_touching_the_others() -> None:
    async def scenario() -> None:
        barrier = Barrier()
        barrier.release.set()
        routines = LeaderRoutines(barrier)
        crashing = Probe(crashes=[RuntimeError("boom"), ValueError("bad")])
        steady = Probe()
        routines.add("crashing", crashing)
        routines.add("steady", steady)
        routines.on_leadership(True)
        await until(lambda: crashing.starts == 3)
        await asyncio.sleep(0.03)
        assert crashing.starts == 3  # settled after two crashes: no further restarts
        assert steady.starts == 1 and steady.cancelled == 0
        await routines.stop()

    run(scenario)


def test_a_routine_cancelled_from_inside_is_restarted_not_fatal() -> None:
    """A CancelledError we did not ask for (e.g. a closed gRPC channel) must not end leadership work."""

    async def scenario() -> None:
        barrier = Barrier()
        barrier.release.set()
        routines = LeaderRoutines(barrier)
        hit = Probe(crashes=[asyncio.CancelledError()])
        other = Probe()
        routines.add("hit", hit)
        routines.add("other", other)
        routines.on_leadership(True)
        await until(lambda: hit.starts == 2)
        await asyncio.sleep(0.02)
        assert other.starts == 1 and other.cancelled == 0
        assert routines.leading
        await routines.stop()
        assert hit.cancelled == 1 and other.cancelled == 1

    run(scenario)


def test_a_routine_that_finishes_is_not_restarted() -> None:
    async def scenario() -> None:
        barrier = Barrier()
        barrier.release.set()
        routines = LeaderRoutines(barrier)
        once = Probe(finish=True)
        routines.add("once", once)
        routines.on_leadership(True)
        await until(lambda: once.starts == 1)
        await asyncio.sleep(0.05)
        assert once.starts == 1
        await routines.stop()

    run(scenario)


def test_step_down_cancels_every_routine_and_calls_on_step_down() -> None:
    async def scenario() -> None:
        barrier = Barrier()
        barrier.release.set()
        stepped_down: list[None] = []
        routines = LeaderRoutines(barrier, on_step_down=lambda: stepped_down.append(None))
        probes = [Probe() for _ in range(3)]
        for number, probe in enumerate(probes):
            routines.add(f"r{number}", probe)
        routines.on_leadership(True)
        await until(lambda: all(p.starts == 1 for p in probes))
        routines.on_leadership(False)
        assert stepped_down == [None] and not routines.leading
        await until(lambda: all(p.cancelled == 1 for p in probes))
        routines.on_leadership(False)  # already a follower: nothing more
        assert stepped_down == [None]
        # and leadership can come back
        routines.on_leadership(True)
        await until(lambda: all(p.starts == 2 for p in probes))
        assert barrier.calls == 2
        await routines.stop()

    run(scenario)


def test_step_down_while_waiting_for_the_barrier_starts_nothing() -> None:
    async def scenario() -> None:
        barrier = Barrier()
        stepped_down: list[None] = []
        routines = LeaderRoutines(barrier, on_step_down=lambda: stepped_down.append(None))
        probe = Probe()
        routines.add("p", probe)
        routines.on_leadership(True)
        await until(lambda: barrier.calls == 1)
        routines.on_leadership(False)
        barrier.release.set()
        await asyncio.sleep(0.05)
        assert probe.starts == 0 and stepped_down == [None] and not routines.leading

    run(scenario)


def test_barrier_failures_are_retried_until_it_commits() -> None:
    async def scenario() -> None:
        barrier = Barrier(failures=3)
        barrier.release.set()
        routines = LeaderRoutines(barrier)
        probe = Probe()
        routines.add("p", probe)
        routines.on_leadership(True)
        await until(lambda: probe.starts == 1)
        assert barrier.calls == 4 and routines.leading
        await routines.stop()

    run(scenario)


def test_stop_cancels_the_routines() -> None:
    async def scenario() -> None:
        barrier = Barrier()
        barrier.release.set()
        routines = LeaderRoutines(barrier)
        probe = Probe()
        routines.add("p", probe)
        routines.on_leadership(True)
        await until(lambda: probe.starts == 1)
        await routines.stop()
        assert probe.cancelled == 1
        await routines.stop()  # idempotent

    run(scenario)

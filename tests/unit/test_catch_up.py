"""`CatchUp`: callers that found nothing locally wait for one barrier started after they asked;
callers arriving while a barrier is out wait for the next one, so a burst costs two barriers, not
one per caller; the leader, and a follower with no leader, never wait."""

from __future__ import annotations

import asyncio

from meshfed.server.raft.types import RaftError
from meshfed.server.requests.catch_up import CatchUp

from ..aio import run


class FakeRaft:
    """A follower's barrier that completes when the test says so."""

    def __init__(self, *, leader: bool = False, known_leader: bool = True) -> None:
        self.leader = leader
        self.leader_known = known_leader
        self.barriers: list[asyncio.Future[int]] = []
        self.fail = False

    def is_leader(self) -> bool:
        return self.leader

    def known_leader(self) -> bool:
        return self.leader_known

    def last_contact(self) -> float:
        return 0.0

    async def barrier(self, timeout: float = 5.0) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.barriers.append(future)
        if self.fail:
            raise RaftError("no leader", maybe_applied=False)
        return await asyncio.wait_for(future, timeout)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_burst_costs_two_barriers_and_late_callers_wait_for_the_second() -> None:
    async def scenario() -> None:
        raft = FakeRaft()
        catch_up = CatchUp(raft)
        first = [asyncio.ensure_future(catch_up.wait()) for _ in range(100)]
        await _settle()
        assert len(raft.barriers) == 1
        late = [asyncio.ensure_future(catch_up.wait()) for _ in range(100)]
        await _settle()
        assert len(raft.barriers) == 1  # the late ones queue behind the barrier that is out
        raft.barriers[0].set_result(7)
        await _settle()
        assert all(task.done() and task.result() for task in first)
        assert not any(task.done() for task in late)  # the first barrier started before they asked
        assert len(raft.barriers) == 2
        raft.barriers[1].set_result(8)
        await _settle()
        assert all(task.done() and task.result() for task in late)
        assert len(raft.barriers) == 2 and catch_up.rounds == 2

    run(scenario())


def test_the_leader_and_a_follower_without_a_leader_do_not_wait() -> None:
    async def scenario() -> None:
        leader = FakeRaft(leader=True)
        assert await CatchUp(leader).wait() is True
        alone = FakeRaft(known_leader=False)
        assert await CatchUp(alone).wait() is False
        assert leader.barriers == [] and alone.barriers == []

    run(scenario())


def test_a_failed_barrier_answers_false_and_the_next_caller_tries_again() -> None:
    async def scenario() -> None:
        raft = FakeRaft()
        raft.fail = True
        catch_up = CatchUp(raft)
        assert await catch_up.wait() is False
        raft.fail = False
        waiting = asyncio.ensure_future(catch_up.wait())
        await _settle()
        raft.barriers[-1].set_result(3)
        assert await waiting is True
        assert catch_up.failures == 1

    run(scenario())


def test_a_cancelled_caller_leaves_the_round_to_the_others() -> None:
    async def scenario() -> None:
        raft = FakeRaft()
        catch_up = CatchUp(raft)
        gone = asyncio.ensure_future(catch_up.wait())
        staying = asyncio.ensure_future(catch_up.wait())
        await _settle()
        gone.cancel()
        await _settle()
        raft.barriers[0].set_result(1)
        assert await staying is True
        assert len(raft.barriers) == 1

    run(scenario())

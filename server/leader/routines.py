"""Leader routines: what only the current leader runs, started and stopped with leadership.

On gaining leadership we first commit a barrier (so our state includes everything the previous
leader committed) and then start each routine as its own task; a routine that crashes is logged
and restarted after a pause, without touching the others. On losing leadership every routine is
cancelled and `on_step_down` runs (it zeroes the replication gauges, Consul #20665).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

ROUTINE_RESTART_DELAY = 1.0
BARRIER_RETRY_DELAY = 0.5

Routine = Callable[[], Awaitable[None]]


class LeaderRoutines:
    def __init__(
        self,
        barrier: Callable[[], Awaitable[int]],
        on_step_down: Callable[[], None] | None = None,
    ) -> None:
        self._barrier = barrier
        self._on_step_down = on_step_down
        self._routines: dict[str, Routine] = {}
        self._task: asyncio.Task[None] | None = None
        self.leading = False

    def add(self, name: str, routine: Routine) -> None:
        self._routines[name] = routine

    def on_leadership(self, is_leader: bool) -> None:
        if is_leader and self._task is None:
            log.info("gained leadership: starting leader routines")
            self._task = asyncio.get_running_loop().create_task(self._lead(), name="leader-routines")
        elif not is_leader and self._task is not None:
            log.info("lost leadership: stopping leader routines")
            self._task.cancel()
            self._task = None
            self.leading = False
            if self._on_step_down:
                self._on_step_down()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _lead(self) -> None:
        while True:
            try:
                await self._barrier()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("leader barrier failed, retrying: %s", exc)
                await asyncio.sleep(BARRIER_RETRY_DELAY)
        self.leading = True
        tasks = [asyncio.create_task(self._supervise(name, r), name=name) for name, r in self._routines.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, routine: Routine) -> None:
        while True:
            try:
                await routine()
                return
            except asyncio.CancelledError:
                if _cancel_requested():
                    raise
                # Not our step-down: something inside the routine was cancelled (e.g. a gRPC call
                # on a channel the pool closed). Letting it through would end every routine while
                # we still lead, silently; treat it as a crash instead.
                log.error("leader routine %s was cancelled from inside; restarting in %.0fs", name, ROUTINE_RESTART_DELAY)
                await asyncio.sleep(ROUTINE_RESTART_DELAY)
            except Exception:
                log.exception("leader routine %s crashed; restarting in %.0fs", name, ROUTINE_RESTART_DELAY)
                await asyncio.sleep(ROUTINE_RESTART_DELAY)


def _cancel_requested() -> bool:
    """True when the current task itself was asked to stop (step-down or shutdown)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0

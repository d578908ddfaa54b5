"""What the Connect CA's two leader routines share (reference connect-data.md §C.2, §C.3).

The primary's bootstrap (`primary.py`) and the secondary's root watch (`secondary.py`) both write
the whole `CAState` record with one compare-and-set, so a racing writer (another leader, an
operator's configuration PUT) makes the write fail rather than be overwritten, and both retry
failed rounds on the same schedule: 1 s doubling to a cap, plus up to 10 % jitter.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from meshfed.fsm import CAStateSet
from meshfed.fsm.records import CAState
from meshfed.replication.loop import Backoff
from meshfed.server.endpoints.ports import Proposer
from meshfed.server.endpoints.writes import propose

BACKOFF_BASE = 1.0
BACKOFF_JITTER = 0.10

Sleep = Callable[[float], Awaitable[None]]


class CAStore(Protocol):
    def ca_state(self) -> tuple[int, CAState | None]: ...


def ca_backoff(cap: float) -> Backoff:
    """1 s doubling to `cap`, plus up to 10 % jitter: the bootstrap's and the watch's schedule."""
    return Backoff(BACKOFF_BASE, cap, BACKOFF_JITTER)


def backoff(consecutive_failures: int, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after `consecutive_failures` in a row; 0 before the first failure."""
    return ca_backoff(cap).delay(consecutive_failures, rng)


async def store_ca_state(raft: Proposer, state: CAState, cas: int) -> bool:
    """One CAS write of the whole record; False when another write got there first."""
    result = await propose(raft, uuid.uuid4().hex, CAStateSet(state, cas=cas))
    return result.value is not False


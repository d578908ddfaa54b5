"""Stream status of each peering, kept in memory on the leader (reference peering.md §1.5, §1.6).

Not Raft state: a heartbeat every few seconds per peering would otherwise be a log entry each.
Both ends of the stream (the dialer's leader and the acceptor's) feed their own tracker: any
message received is LastReceive, a Heartbeat message also LastHeartbeat, any message sent
LastSend; the byte counts and whether a stream is connected are metrics. A peering whose peer has
said nothing for `timeout` reads FAILING (Consul: `defaultIncomingHeartbeatTimeout = 2m`) and
ACTIVE again as soon as it answers. A new leader starts with an empty tracker whose clock starts
at its election: a peer gets a full timeout to reach it before it reads FAILING. A server that
does not lead (a `?stale` read served by a follower) hears nothing, so it judges nothing: it
shows the stored state without times.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from meshfed.fsm.peering.records import STATE_ACTIVE, STATE_FAILING

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class StreamStatus:
    last_heartbeat: float | None = None  # wall-clock seconds
    last_receive: float | None = None
    last_send: float | None = None


@dataclass(frozen=True)
class StreamCounters:
    streams: int = 0  # open now: briefly 2 while a new stream replaces one not yet closed
    bytes_sent: int = 0
    bytes_received: int = 0
    reconnects: int = 0


def read_state(stored: str, last_receive: float | None, since: float, now: float, timeout: float) -> str:
    """What a read shows: an ACTIVE peering whose peer has been silent for longer than `timeout`
    (counted from `since`, the tracker's start, when nothing was received yet) is FAILING."""
    if stored != STATE_ACTIVE:
        return stored
    heard = last_receive if last_receive is not None else since
    return STATE_FAILING if now - heard > timeout else stored


class StreamTracker:
    def __init__(self, timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()
        self._status: dict[str, StreamStatus] = {}
        self._counters: dict[str, StreamCounters] = {}
        self.leading = False

    def restart(self) -> None:
        """A new leadership term: what an earlier term heard says nothing about the peer now."""
        with self._lock:
            self._since = self._clock()
            self._status.clear()
            self._counters.clear()
            self.leading = True

    def stop(self) -> None:
        """The term ended: forget everything until the next one."""
        with self._lock:
            self._status.clear()
            self._counters.clear()
            self.leading = False

    def _update(self, peer_name: str, **fields: float) -> None:
        with self._lock:
            old = self._status.get(peer_name.lower(), StreamStatus())
            self._status[peer_name.lower()] = StreamStatus(**{**old.__dict__, **fields})

    def _count(self, peer_name: str, **added: int) -> None:
        with self._lock:
            old = self._counters.get(peer_name.lower(), StreamCounters())
            self._counters[peer_name.lower()] = dataclasses.replace(
                old, **{k: getattr(old, k) + v for k, v in added.items()})

    def received(self, peer_name: str, heartbeat: bool = False, size: int = 0) -> None:
        now = self._clock()
        if heartbeat:
            self._update(peer_name, last_receive=now, last_heartbeat=now)
        else:
            self._update(peer_name, last_receive=now)
        self._count(peer_name, bytes_received=size)

    def sent(self, peer_name: str, size: int = 0) -> None:
        self._update(peer_name, last_send=self._clock())
        self._count(peer_name, bytes_sent=size)

    def connected(self, peer_name: str, up: bool) -> None:
        """A stream for the peering opened (`up`) or ended; an ending counts as a reconnect."""
        self._count(peer_name, streams=1 if up else -1, reconnects=0 if up else 1)

    def counters(self, peer_name: str) -> StreamCounters:
        with self._lock:
            return self._counters.get(peer_name.lower(), StreamCounters())

    def forget(self, peer_name: str) -> None:
        with self._lock:
            self._status.pop(peer_name.lower(), None)
            self._counters.pop(peer_name.lower(), None)

    def status(self, peer_name: str) -> StreamStatus:
        with self._lock:
            return self._status.get(peer_name.lower(), StreamStatus())

    def state(self, peer_name: str, stored: str) -> str:
        if not self.leading:
            return stored
        status = self.status(peer_name)
        return read_state(stored, status.last_receive, self._since, self._clock(), self.timeout)

    def heartbeat_age(self, peer_name: str) -> float:
        """Seconds since the peer was last heard (since the tracker started when never)."""
        status = self.status(peer_name)
        heard = status.last_heartbeat if status.last_heartbeat is not None else self._since
        return max(0.0, self._clock() - heard)

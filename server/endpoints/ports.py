"""The seam between the transport (Raft, forwarding, blocking queries) and the endpoints.

Endpoints (and the router and query runner) depend on these protocols and on nothing concrete
below them, so an endpoint can be driven in a unit test by the in-memory twins under
`tests/twins/` (a real state machine behind a synchronous "Raft", a router that serves locally),
and in production by `RaftNode`, `Router` and `QueryRunner`. Each protocol lists only what its
callers use; widening one widens what every
twin must implement, which is the point: the twins ship with the seam, not beside it.

They are `runtime_checkable` so a test can assert that a twin still fits; `isinstance` checks
only that the members exist, and the signatures are checked by the type checker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from meshfed.fsm import Command, Result
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.stream import ClientStream

if TYPE_CHECKING:
    from meshfed.server.raft.types import PeerHealth

T = TypeVar("T")


@runtime_checkable
class Proposer(Protocol):
    """Commits commands through the replicated log; what `writes.propose` needs."""

    async def apply(self, commands: Sequence[tuple[str, Command]], timeout: float = ...) -> list[Result]:
        """One Result per (request_id, command), in order, once committed and applied locally.

        Raises:
            RaftError: not committed (no leader, lost quorum, timeout); `maybe_applied` tells
                whether a retry must reuse the same request ids.
        """
        ...


@runtime_checkable
class LeaderContact(Protocol):
    """Whether this server leads and how fresh its contact with the leader is: what every query's
    meta reports and every routing decision starts from."""

    def is_leader(self) -> bool: ...

    def last_contact(self) -> float:
        """Seconds since the leader was last heard from: 0 on the leader, inf if never."""
        ...


@runtime_checkable
class LeaderLookup(LeaderContact, Protocol):
    """Who leads, by Raft address: what the router needs to forward a call to the leader."""

    def leader(self) -> str | None:
        """The leader's Raft address, or None while there is no leader known."""
        ...


@runtime_checkable
class ReadBarrier(LeaderContact, Protocol):
    """What the query runner needs for Consul's consistency modes: a known leader for the meta,
    and a barrier so a `consistent` read sees every write committed before it."""

    def known_leader(self) -> bool: ...

    async def barrier(self, timeout: float = ...) -> int:
        """The commit index once everything committed before the call is applied here."""
        ...


@runtime_checkable
class LeaderView(LeaderLookup, Protocol):
    """This server's own view of its Raft cluster, as Status.* serves it (never forwarded)."""

    @property
    def self_address(self) -> str: ...

    @property
    def peers(self) -> Sequence[str]:
        """The other voters' Raft addresses (this server excluded)."""
        ...

    def peer_health(self) -> Mapping[str, PeerHealth]:
        """Every member by Raft address, alive or not as this server knows it (only the leader
        hears from every member)."""
        ...


@runtime_checkable
class RequestRouter(Protocol):
    """Decides where an RPC is answered: `local()` here, else the leader or another datacenter."""

    async def serve(
        self,
        method: str,
        header: RequestHeader,
        body: Any,
        local: Callable[[], Awaitable[T]],
        *,
        write: bool,
    ) -> T | tuple[QueryMeta, Any]: ...


@runtime_checkable
class LeaderStreams(Protocol):
    """Where a stream that only the leader serves goes when it reaches another server."""

    async def open_leader_stream(self, method: str, header: RequestHeader, first: Any) -> ClientStream | None:
        """None when this server leads; else the stream opened on the leader, to relay."""
        ...


@runtime_checkable
class Queries(Protocol):
    """Runs reads under a request's blocking and consistency rules and stamps the query meta."""

    def meta(self, index: int, consistency: str = "") -> QueryMeta: ...

    async def run(
        self,
        header: RequestHeader,
        tables: Iterable[str],
        query: Callable[[], tuple[int, T]],
        *,
        wait_for_existence: bool = False,
        share: Hashable | None = None,
    ) -> tuple[QueryMeta, T]: ...

"""One server's transport, twinned: the Raft twin, the router twin and the real blocking-query
engine over a real watch hub, wired the way the agent wires the real ones."""

from __future__ import annotations

from dataclasses import dataclass

from meshfed.fsm.state import StateStore
from meshfed.server.requests.blocking import QueryRunner
from meshfed.server.requests.watch import WatchHub
from tests.twins.raft import RaftTwin
from tests.twins.router import RouterTwin


@dataclass
class ServerTwin:
    datacenter: str
    watches: WatchHub
    raft: RaftTwin
    router: RouterTwin
    queries: QueryRunner

    @property
    def state(self) -> StateStore:
        return self.raft.state


def server_twin(datacenter: str = "dc1") -> ServerTwin:
    watches = WatchHub()
    raft = RaftTwin(watches)
    return ServerTwin(datacenter, watches, raft, RouterTwin(datacenter), QueryRunner(raft, watches))

"""Where the Connect proxy sends a new upstream connection (server/dataplane/upstreams.py), against
canned server answers and a hand-moved clock: the hop and addresses per mesh-gateway mode, the
healthy-only gateway rows of another DC, and that answers are reused only within their second."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from meshfed.server.dataplane.peer_trust import PeerTrust
from meshfed.server.dataplane.proxy_config import (
    HOP_DIRECT,
    HOP_LOCAL_GATEWAY,
    HOP_REMOTE_GATEWAY,
    ProxyConfig,
    Upstream,
)
from meshfed.server.dataplane.upstreams import RESOLVE_CACHE_SECONDS, UpstreamRoutes

TRUST_DOMAIN = "11111111-2222-3333-4444-555555555555.consul"


def row(host: str, port: int) -> dict[str, Any]:
    return {"Node": {"Address": host}, "Service": {"Port": port}}


@dataclass
class Servers:
    """Answers by path prefix; records every path asked."""

    mode: str = ""
    answers: dict[str, Any] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def request(self, method: str, path: str, *, json: Any = None,
                      timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        self.asked.append(path)
        if path.startswith("/v1/internal/mesh-gateway-mode"):
            return 200, {}, {"Mode": self.mode}
        for prefix, body in self.answers.items():
            if path.startswith(prefix):
                return 200, {}, body
        return 500, {}, "no such path"


@dataclass
class Where:
    datacenter: str = "dc1"
    trust_domain: str = TRUST_DOMAIN
    peers: PeerTrust = field(default_factory=PeerTrust)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def routes(servers: Servers, clock: Clock | None = None) -> UpstreamRoutes:
    return UpstreamRoutes(ProxyConfig("web"), servers, Where(), clock=clock or Clock())


@pytest.mark.parametrize("mode,hop,asked", [
    ("none", HOP_DIRECT, "/v1/health/connect/socat?passing&stale&dc=dc2"),
    ("local", HOP_LOCAL_GATEWAY, "/v1/health/service/mesh-gateway?passing&stale"),
])
def test_another_dc_by_mode(mode: str, hop: str, asked: str) -> None:
    servers = Servers(mode=mode, answers={"/v1/health/": [row("127.0.2.9", 8443)]})
    got = asyncio.run(routes(servers).candidates(Upstream("socat", 8181, "dc2")))
    assert got == (hop, [("127.0.2.9", 8443)])
    assert servers.asked[-1] == asked


def test_mode_remote_dials_only_the_passing_gateways_of_the_destination_dc() -> None:
    gateways = {"dc2": [
        {**row("127.0.2.1", 8443), "Checks": [{"Status": "passing"}]},
        {**row("127.0.2.2", 8443), "Checks": [{"Status": "critical"}]},
    ], "dc3": [row("127.0.3.1", 8443)]}
    servers = Servers(mode="remote", answers={"/v1/internal/federation-states/mesh-gateways": gateways})
    assert asyncio.run(routes(servers).candidates(Upstream("socat", 8181, "dc2"))) == (
        HOP_REMOTE_GATEWAY, [("127.0.2.1", 8443)])


def test_answers_are_reused_within_a_second_and_asked_again_after() -> None:
    clock = Clock()
    servers = Servers(answers={"/v1/health/connect/socat": [row("127.0.1.5", 9000)]})
    upstreams = routes(servers, clock)
    upstream = Upstream("socat", 8181)

    async def twice() -> None:
        await upstreams.candidates(upstream)
        clock.now += RESOLVE_CACHE_SECONDS / 2
        await upstreams.candidates(upstream)

    asyncio.run(twice())
    assert len(servers.asked) == 2  # the mode and the rows, once
    clock.now += RESOLVE_CACHE_SECONDS
    asyncio.run(upstreams.candidates(upstream))
    assert len(servers.asked) == 4


def test_a_failed_read_is_an_error_and_is_not_reused() -> None:
    servers = Servers()
    upstreams = routes(servers)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="HTTP 500"):
            asyncio.run(upstreams.candidates(Upstream("socat", 8181)))
    # The mode read succeeded and is reused; the failed catalog read is asked again.
    assert [p.split("?")[0] for p in servers.asked] == [
        "/v1/internal/mesh-gateway-mode", "/v1/health/connect/socat", "/v1/health/connect/socat"]


def test_target_is_the_destination_dc_s_sni_and_identity() -> None:
    upstreams = routes(Servers())
    sni, identity = upstreams.target(Upstream("socat", 8181, "DC2"))
    assert sni == f"socat.default.dc2.internal.{TRUST_DOMAIN}"
    assert identity.lower() == f"spiffe://{TRUST_DOMAIN}/ns/default/dc/dc2/svc/socat"
    assert upstreams.target(Upstream("socat", 8181))[0] == f"socat.default.dc1.internal.{TRUST_DOMAIN}"

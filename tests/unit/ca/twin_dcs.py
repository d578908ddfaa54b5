"""Two datacenters' Connect CAs on the in-memory twins, shared by the CA leader-routine and
endpoint tests.

Each datacenter is the shared twins (tests/twins/): a real state machine behind the Raft twin
(applies in order, records every command), the real blocking-query engine, and the router twin,
which serves locally or hands the call to the other datacenter's endpoint (or fails, when the WAN
is cut).
"""

from __future__ import annotations

import asyncio
import datetime
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshfed.fsm.records import CAState
from meshfed.rpc.header import RequestHeader
from meshfed.server.ca.primary import (
    ensure_primary_ca,
)
from meshfed.server.ca.secondary import SecondaryCA
from meshfed.server.endpoints.connect_ca import ConnectCAEndpoint
from meshfed.server.requests.blocking import QueryRunner
from meshfed.server.requests.watch import WatchHub
from tests.twins.raft import RaftTwin
from tests.twins.router import RouterTwin

START = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


class StopLoop(Exception):
    """Raised by a fake sleep to end a routine after the sleeps a test wanted to see."""


@dataclass
class Clock:
    now: datetime.datetime = START

    def __call__(self) -> datetime.datetime:
        return self.now


@dataclass
class DC:
    name: str
    raft: RaftTwin
    router: RouterTwin
    queries: QueryRunner
    endpoint: ConnectCAEndpoint

    def ca(self) -> CAState | None:
        return self.raft.state.ca_state()[1]


def make_dc(name: str, clock: Clock, primary: str = "dc1") -> DC:
    watches = WatchHub()
    raft = RaftTwin(watches)
    router = RouterTwin(name)
    queries = QueryRunner(raft, watches)
    endpoint = ConnectCAEndpoint(
        primary_datacenter=primary, datacenter=name, state=raft.state, raft=raft,
        router=router, queries=queries, clock=clock,
    )
    return DC(name, raft, router, queries, endpoint)


def federate(*dcs: DC) -> None:
    for dc in dcs:
        dc.router.peers = {other.name: other.endpoint.handlers() for other in dcs if other is not dc}


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def cert_of(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def ski(cert: x509.Certificate) -> str:
    digest = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return ":".join(f"{b:02x}" for b in digest)


async def roots_of(dc: DC) -> dict[str, Any]:
    _, body = await dc.endpoint.roots(RequestHeader(), {})
    return body["roots"]


def secondary_watch(dc: DC, clock: Clock, sleep: Callable[[float], Awaitable[None]] = no_sleep) -> SecondaryCA:
    handlers = dc.endpoint.handlers()
    return SecondaryCA(
        datacenter=dc.name, primary_datacenter="dc1", state=dc.raft.state, raft=dc.raft,
        call=lambda method, header, body: handlers[method](header, body),
        clock=clock, sleep=sleep, rng=random.Random(7),
    )


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def bootstrapped_pair(clock: Clock) -> tuple[DC, DC]:
    dc1, dc2 = make_dc("dc1", clock), make_dc("dc2", clock)
    federate(dc1, dc2)
    await ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock)
    return dc1, dc2


def assert_signed_by_primary(dc2_roots: dict[str, Any], dc1_roots: dict[str, Any], dc2_state: CAState) -> None:
    assert dc2_roots["TrustDomain"] == dc1_roots["TrustDomain"]
    assert dc2_roots["ActiveRootID"] == dc1_roots["ActiveRootID"]
    primary = next(r for r in dc1_roots["Roots"] if r["Active"])
    ours = next(r for r in dc2_roots["Roots"] if r["Active"])
    assert ours["RootCert"] == primary["RootCert"]
    intermediate = cert_of(ours["IntermediateCerts"][-1])
    intermediate.verify_directly_issued_by(cert_of(primary["RootCert"]))
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert ours["SigningKeyID"] == ski(intermediate) != primary["SigningKeyID"]
    (stored,) = [r for r in dc2_state.roots if r["Active"]]
    key = serialization.load_pem_private_key(stored["SigningKey"].encode(), password=None)
    assert key.public_key() == intermediate.public_key()  # the key that signs leaves here


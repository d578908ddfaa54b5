"""Connect CA leader routines and endpoints with in-memory twins (reference connect-data.md §C.2, §C.3).

Each datacenter is the shared twins (tests/twins/): a real state machine behind the Raft twin
(applies in order, records every command), the real blocking-query engine, and the router twin,
which serves locally or hands the call to the other datacenter's endpoint (or fails, when the WAN
is cut).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshfed.fsm import CAStateSet
from meshfed.fsm.records import CAState
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server import ca
from meshfed.server.ca.leader import (
    BOOTSTRAP_BACKOFF_MAX,
    CA_ROOTS,
    SecondaryCA,
    backoff,
    bootstrap_primary_ca,
    ensure_primary_ca,
    intermediate_reason,
    prune_primary_ca,
)
from meshfed.server.endpoints.connect_ca import ERR_NOT_INITIALIZED, ERR_NOT_PRIMARY, ConnectCAEndpoint
from meshfed.server.http import routes_connect_ca
from meshfed.server.http.api import API_KEY
from meshfed.server.http.app import error_middleware
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


# --------------------------------------------------------------------------------------------------
# Primary bootstrap (§C.2)


def test_bootstrap_writes_one_root_with_cas_zero_and_is_idempotent() -> None:
    """§C.2 steps 1-4: a fresh cluster id and root in one CAS write; a second run keeps them."""

    async def scenario() -> None:
        clock = Clock()
        dc1 = make_dc("dc1", clock)
        assert await ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock) is True
        (write,) = dc1.raft.ca_sets()
        assert write.cas == 0
        first = dc1.ca()
        assert first is not None and first.cluster_id
        clock.now += HOUR
        assert await ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock) is False
        assert len(dc1.raft.ca_sets()) == 1 and dc1.ca() == first

        roots = await roots_of(dc1)
        assert roots["TrustDomain"] == f"{first.cluster_id}.consul"
        (root,) = roots["Roots"]
        assert root["ID"] == roots["ActiveRootID"] and root["Active"] is True
        assert "SigningKey" not in root and "SigningCert" not in root
        assert root["CreateIndex"] == root["ModifyIndex"] == first.modify_index
        cert = cert_of(root["RootCert"])
        cert.verify_directly_issued_by(cert)
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{first.cluster_id}.consul"]

    asyncio.run(scenario())


def test_two_racing_bootstraps_store_one_root() -> None:
    """The cas=0 write lets only one of two concurrent leaders create the CA; the loser re-reads."""

    async def scenario() -> None:
        clock = Clock()
        dc1 = make_dc("dc1", clock)
        results = await asyncio.gather(
            ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock),
            ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock),
        )
        assert sorted(results) == [False, True]
        stored = dc1.ca()
        assert stored is not None and len(stored.roots) == 1
        assert [w.cas for w in dc1.raft.ca_sets()] == [0, 0]  # the second was refused by the CAS

    asyncio.run(scenario())


def test_bootstrap_keeps_retrying_with_backoff_then_prunes_hourly() -> None:
    """§C.2 step 5 (retry in the background with backoff) and step 7 (hourly pruning)."""

    async def scenario() -> None:
        clock = Clock()
        dc1 = make_dc("dc1", clock)
        dc1.raft.failures = 4
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) >= 6:
                raise StopLoop
            await asyncio.sleep(0)

        with pytest.raises(StopLoop):
            await bootstrap_primary_ca(dc1.raft.state, dc1.raft, clock=clock, sleep=sleep, rng=random.Random(1),
                                       prune_interval=3600)
        for wait, base in zip(sleeps[:4], (1, 2, 4, 8), strict=True):
            assert base <= wait <= base * 1.1
        assert sleeps[4:] == [3600, 3600]  # bootstrapped, then the pruning cadence
        assert dc1.ca() is not None and len(dc1.raft.ca_sets()) == 1

    asyncio.run(scenario())


def test_backoff_doubles_to_its_cap() -> None:
    rng = random.Random(3)
    assert backoff(0, 60) == 0
    assert all(60 <= backoff(n, BOOTSTRAP_BACKOFF_MAX, rng) <= 66 for n in (7, 8, 50, 10_000))


def test_rotation_keeps_the_old_root_until_pruning_after_twice_the_leaf_ttl() -> None:
    """A key change needs a new root (§C.2 step 4): the old one stays listed, inactive, and is
    pruned only once 2 x LeafCertTTL has passed since it was rotated out (step 7)."""

    async def scenario() -> None:
        clock = Clock()
        dc1 = make_dc("dc1", clock)
        await ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock)
        old_id = (await roots_of(dc1))["ActiveRootID"]
        create_index = dc1.ca().modify_index  # type: ignore[union-attr]

        clock.now += HOUR
        request = {"Provider": "consul", "Config": {"LeafCertTTL": "24h", "PrivateKeyBits": 384}}
        _, ok = await dc1.endpoint.set_configuration(RequestHeader(request_id="r1"), request)
        assert ok is True
        roots = await roots_of(dc1)
        assert roots["ActiveRootID"] != old_id
        by_id = {r["ID"]: r for r in roots["Roots"]}
        assert by_id[old_id]["Active"] is False and by_id[roots["ActiveRootID"]]["PrivateKeyBits"] == 384
        assert by_id[old_id]["CreateIndex"] == create_index  # rewritten set, creation kept
        assert by_id[roots["ActiveRootID"]]["SerialNumber"] == by_id[old_id]["SerialNumber"] + 1

        clock.now += 48 * HOUR  # exactly 2 x 24h after the rotation: not yet
        assert await prune_primary_ca(dc1.raft.state, dc1.raft, clock) == 0
        clock.now += datetime.timedelta(seconds=1)
        assert await prune_primary_ca(dc1.raft.state, dc1.raft, clock) == 1
        assert [r["ID"] for r in (await roots_of(dc1))["Roots"]] == [roots["ActiveRootID"]]

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------------------
# Endpoint rules


def test_configuration_write_retries_a_lost_cas_and_ttl_only_changes_keep_the_root() -> None:
    async def scenario() -> None:
        clock = Clock()
        dc1 = make_dc("dc1", clock)
        await ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock)
        root_id = (await roots_of(dc1))["ActiveRootID"]

        def concurrent_write() -> None:  # e.g. pruning, between our read and our proposal
            current = dc1.ca()
            assert current is not None
            dc1.raft.apply_now(CAStateSet(dataclasses.replace(current), cas=current.modify_index))

        dc1.raft.before_apply = concurrent_write
        request = {"provider": "consul", "config": {"leaf_cert_ttl": "48h"}}
        _, ok = await dc1.endpoint.set_configuration(RequestHeader(request_id="r2"), request)
        assert ok is True
        casses = [w.cas for w in dc1.raft.ca_sets()]
        assert casses[-2] == casses[-3] and casses[-1] > casses[-2]  # lost once, then re-read
        _, body = await dc1.endpoint.get_configuration(RequestHeader(), {})
        assert body["config"]["Config"]["LeafCertTTL"] == "48h"
        assert body["config"]["ModifyIndex"] == dc1.ca().modify_index  # type: ignore[union-attr]
        assert (await roots_of(dc1))["ActiveRootID"] == root_id

    asyncio.run(scenario())


def test_endpoint_errors_name_the_problem() -> None:
    async def scenario() -> None:
        clock = Clock()
        dc1, dc2 = make_dc("dc1", clock), make_dc("dc2", clock)
        federate(dc1, dc2)
        with pytest.raises(RPCError) as not_ready:
            await dc1.endpoint.roots(RequestHeader(), {})
        assert (not_ready.value.code, not_ready.value.message) == (grpc.StatusCode.FAILED_PRECONDITION, ERR_NOT_INITIALIZED)

        await ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock)
        with pytest.raises(RPCError) as bad:
            await dc2.endpoint.set_configuration(RequestHeader(), {"Provider": "consul", "Config": {"LeafCertTTL": "1m"}})
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and "LeafCertTTL" in bad.value.message

        csr, _ = ca.make_intermediate_csr(dc1.ca().cluster_id, "dc2")  # type: ignore[union-attr]
        with pytest.raises(RPCError) as elsewhere:
            await dc2.endpoint.sign_intermediate(RequestHeader(), {"csr": csr})
        assert (elsewhere.value.code, elsewhere.value.message) == (grpc.StatusCode.FAILED_PRECONDITION, ERR_NOT_PRIMARY)
        other_domain, _ = ca.make_intermediate_csr(ca.new_cluster_id(), "dc2")
        with pytest.raises(RPCError) as foreign:
            await dc2.endpoint.sign_intermediate(RequestHeader(datacenter="dc1"), {"csr": other_domain})
        assert foreign.value.code == grpc.StatusCode.INVALID_ARGUMENT and "trust domain" in foreign.value.message

    asyncio.run(scenario())


def test_configuration_write_at_a_secondary_lands_in_the_primary() -> None:
    async def scenario() -> None:
        clock = Clock()
        dc1, dc2 = make_dc("dc1", clock), make_dc("dc2", clock)
        federate(dc1, dc2)
        await ensure_primary_ca(dc1.raft.state, dc1.raft, clock=clock)
        await dc2.endpoint.set_configuration(
            RequestHeader(datacenter="dc2"), {"Provider": "consul", "Config": {"LeafCertTTL": "96h"}}
        )
        assert dc2.raft.ca_sets() == []
        assert ca.config_from_request(dc1.ca().config, ca.CAConfig()).leaf_cert_ttl == "96h"  # type: ignore[union-attr]

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------------------
# Secondary (§C.3)


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


def test_secondary_gets_an_intermediate_signed_by_the_primary_root() -> None:
    async def scenario() -> None:
        clock = Clock()
        dc1, dc2 = await bootstrapped_pair(clock)
        watch = secondary_watch(dc2, clock)
        await watch.round()
        stored = dc2.ca()
        assert stored is not None and stored.cluster_id == dc1.ca().cluster_id  # type: ignore[union-attr]
        assert stored.config == dc1.ca().config  # type: ignore[union-attr]
        assert_signed_by_primary(await roots_of(dc2), await roots_of(dc1), stored)
        assert watch.status.name == CA_ROOTS and watch.status.in_sync and watch.status.applies == 1
        assert watch.status.last_remote_index == dc1.ca().modify_index  # type: ignore[union-attr]

        writes = len(dc2.raft.ca_sets())
        watch.status.last_remote_index = 0  # next fetch without blocking
        await watch.round()
        assert len(dc2.raft.ca_sets()) == writes, "an unchanged primary must not rewrite the secondary"

    asyncio.run(scenario())


def test_secondary_rerequests_when_the_primary_rotates() -> None:
    """§C.3 root watch: a blocked roots query wakes on the primary's rotation; the secondary
    gets an intermediate from the new root and keeps the old root listed, inactive."""

    async def scenario() -> None:
        clock = Clock()
        dc1, dc2 = await bootstrapped_pair(clock)
        watch = secondary_watch(dc2, clock)
        task = asyncio.create_task(watch.run())
        try:
            await until(lambda: dc2.ca() is not None)
            first_id = (await roots_of(dc2))["ActiveRootID"]
            await until(lambda: watch.status.rounds >= 1)
            clock.now += HOUR
            await dc1.endpoint.set_configuration(
                RequestHeader(), {"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}}
            )
            new_id = (await roots_of(dc1))["ActiveRootID"]
            assert new_id != first_id
            await until(lambda: any(r["Active"] and r["ID"] == new_id for r in dc2.ca().roots))  # type: ignore[union-attr]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        dc2_roots = await roots_of(dc2)
        assert_signed_by_primary(dc2_roots, await roots_of(dc1), dc2.ca())  # type: ignore[arg-type]
        old = next(r for r in dc2_roots["Roots"] if r["ID"] == first_id)
        assert old["Active"] is False
        assert not watch.status.running

    asyncio.run(scenario())


def test_secondary_renews_its_intermediate_past_half_life_in_place() -> None:
    """§C.3 renewal: same primary root (same ID, one entry, CreateIndex kept), a new intermediate."""

    async def scenario() -> None:
        clock = Clock()
        dc1, dc2 = await bootstrapped_pair(clock)
        watch = secondary_watch(dc2, clock)
        await watch.round()
        (before,) = (await roots_of(dc2))["Roots"]

        clock.now += 4400 * HOUR  # default IntermediateCertTTL 8760h: past half
        watch.status.last_remote_index = 0
        await watch.round()
        (after,) = (await roots_of(dc2))["Roots"]
        assert after["ID"] == before["ID"] and after["SigningKeyID"] != before["SigningKeyID"]
        assert after["CreateIndex"] == before["CreateIndex"] < after["ModifyIndex"]
        assert_signed_by_primary(await roots_of(dc2), await roots_of(dc1), dc2.ca())  # type: ignore[arg-type]
        assert cert_of(after["IntermediateCerts"][-1]).not_valid_before_utc > START + 4000 * HOUR

    asyncio.run(scenario())


def test_secondary_keeps_serving_with_backoff_while_the_primary_is_unreachable() -> None:
    async def scenario() -> None:
        clock = Clock()
        dc1, dc2 = await bootstrapped_pair(clock)
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) >= 5:
                raise StopLoop
            await asyncio.sleep(0)

        watch = secondary_watch(dc2, clock, sleep)
        await watch.round()
        served = await roots_of(dc2)
        writes = len(dc2.raft.ca_sets())

        dc2.router.wan_up = False
        with pytest.raises(StopLoop):
            await watch.run()
        assert watch.status.consecutive_failures == 5
        assert "No path to datacenter" in watch.status.last_error_message
        assert not watch.status.in_sync and not watch.status.running
        for wait, base in zip(sleeps, (1, 2, 4, 8, 16), strict=True):
            assert base <= wait <= base * 1.1
        assert await roots_of(dc2) == served and len(dc2.raft.ca_sets()) == writes

        dc2.router.wan_up = True
        await watch.round()
        assert watch.status.consecutive_failures == 0 and watch.status.in_sync

    asyncio.run(scenario())


def test_a_refused_signing_leaves_the_secondary_unchanged() -> None:
    """§C.3: if the primary refuses the CSR the secondary continues without a new intermediate."""

    async def scenario() -> None:
        clock = Clock()
        dc1, dc2 = await bootstrapped_pair(clock)
        handlers = dc2.endpoint.handlers()

        async def call(method: str, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
            if method == "ConnectCA/SignIntermediate":
                raise RPCError(grpc.StatusCode.PERMISSION_DENIED, "Permission denied")
            return await handlers[method](header, body)

        watch = SecondaryCA(datacenter="dc2", primary_datacenter="dc1", state=dc2.raft.state, raft=dc2.raft,
                            call=call, clock=clock)
        with pytest.raises(RPCError):
            await watch.round()
        assert dc2.ca() is None and dc2.raft.ca_sets() == []

    asyncio.run(scenario())


def test_intermediate_reason_table() -> None:
    """§C.3: a new intermediate when none exists, the primary's active root changed, the stored
    SigningKeyID does not match, or half of the intermediate's lifetime has passed."""

    async def scenario() -> None:
        clock = Clock()
        dc1, dc2 = await bootstrapped_pair(clock)
        primary_roots = await roots_of(dc1)
        assert intermediate_reason(None, primary_roots, clock.now) == "no CA stored yet"
        await secondary_watch(dc2, clock).round()
        stored = dc2.ca()
        assert stored is not None
        assert intermediate_reason(stored, primary_roots, clock.now) == ""

        (root,) = stored.roots
        wrong_key_id = dataclasses.replace(stored, roots=({**root, "SigningKeyID": "00:11"},))
        assert "SigningKeyID" in intermediate_reason(wrong_key_id, primary_roots, clock.now)
        no_intermediate = dataclasses.replace(stored, roots=({**root, "IntermediateCerts": None},))
        assert "no intermediate" in intermediate_reason(no_intermediate, primary_roots, clock.now)
        other_root = {**primary_roots, "ActiveRootID": "aa:bb",
                      "Roots": [{**primary_roots["Roots"][0], "ID": "aa:bb"}]}
        assert "active root changed" in intermediate_reason(stored, other_root, clock.now)

        lifetime = cert_of(root["IntermediateCerts"][-1])
        half = lifetime.not_valid_before_utc + (lifetime.not_valid_after_utc - lifetime.not_valid_before_utc) / 2
        assert intermediate_reason(stored, primary_roots, half - HOUR) == ""
        assert "half" in intermediate_reason(stored, primary_roots, half)

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------------------
# HTTP routes


@dataclass
class FakeApi:
    """What the routes and the error middleware read from the agent's `Api`."""

    connect_ca: ConnectCAEndpoint
    state: Any
    queries: QueryRunner


async def http_client(dc: DC) -> TestClient:
    app = web.Application(middlewares=[error_middleware])
    app[API_KEY] = FakeApi(dc.endpoint, dc.raft.state, dc.queries)  # type: ignore[misc]
    routes_connect_ca.add(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def test_http_roots_pem_parameter_and_configuration_put() -> None:
    async def scenario() -> None:
        clock = Clock()
        dc1, _ = await bootstrapped_pair(clock)
        client = await http_client(dc1)
        try:
            response = await client.get("/v1/connect/ca/roots", params={"pem": "0"})  # what py-consul sends
            assert response.status == 200 and int(response.headers["X-Consul-Index"]) >= 1
            body = await response.json()
            assert set(body) == {"ActiveRootID", "TrustDomain", "Roots"}

            response = await client.get("/v1/connect/ca/roots", params={"pem": "true"})
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/pem-certificate-chain"
            chain = x509.load_pem_x509_certificates(await response.read())
            assert [c.serial_number for c in chain] == [r["SerialNumber"] for r in body["Roots"]]

            response = await client.get("/v1/connect/ca/roots", params={"pem": "yes"})
            assert response.status == 400 and "boolean" in await response.text()

            response = await client.put("/v1/connect/ca/configuration",
                                        json={"Provider": "consul", "Config": {"LeafCertTTL": "100h"}})
            assert response.status == 200 and await response.read() == b""
            response = await client.get("/v1/connect/ca/configuration")
            assert (await response.json())["Config"]["LeafCertTTL"] == "100h"

            response = await client.put("/v1/connect/ca/configuration", json={"Provider": "vault"})
            assert response.status == 400 and "Provider" in await response.text()
            response = await client.delete("/v1/connect/ca/configuration")
            assert response.status == 405
        finally:
            await client.close()

    asyncio.run(scenario())

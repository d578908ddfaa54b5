"""The ConnectCA endpoint's rules and HTTP routes (reference connect-data.md §C), with in-memory twins."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from meshfed.fsm import CAStateSet
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server import ca
from meshfed.server.ca.primary import (
    ensure_primary_ca,
)
from meshfed.server.endpoints.connect_ca import ERR_NOT_INITIALIZED, ERR_NOT_PRIMARY, ConnectCAEndpoint
from meshfed.server.http import routes_connect_ca
from meshfed.server.http.api import API_KEY
from meshfed.server.http.app import error_middleware
from meshfed.server.requests.blocking import QueryRunner
from tests.unit.ca.twin_dcs import (
    DC,
    Clock,
    bootstrapped_pair,
    federate,
    make_dc,
    roots_of,
)

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

"""The primary's Connect CA leader routine: bootstrap and pruning (reference connect-data.md §C.2),
with in-memory twins."""

from __future__ import annotations

import asyncio
import datetime
import random

import pytest
from cryptography import x509

from meshfed.rpc.header import RequestHeader
from meshfed.server.ca.leader import backoff
from meshfed.server.ca.primary import (
    BOOTSTRAP_BACKOFF_MAX,
    bootstrap_primary_ca,
    ensure_primary_ca,
    prune_primary_ca,
)
from tests.unit.ca.twin_dcs import (
    HOUR,
    Clock,
    StopLoop,
    cert_of,
    make_dc,
    roots_of,
)

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

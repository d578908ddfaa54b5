"""A secondary's Connect CA root watch (reference connect-data.md §C.3), with in-memory twins."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc
import pytest

from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.ca.secondary import CA_ROOTS, SecondaryCA, intermediate_reason
from tests.unit.ca.twin_dcs import (
    HOUR,
    START,
    Clock,
    StopLoop,
    assert_signed_by_primary,
    bootstrapped_pair,
    cert_of,
    roots_of,
    secondary_watch,
    until,
)

# --------------------------------------------------------------------------------------------------
# Secondary (§C.3)


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

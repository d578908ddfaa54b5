"""Intention.* endpoint (reference/connect-data.md §A) on the shared twins: every write goes through
the real state machine's config-entry CAS, so lost races are real lost races."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from meshfed.fsm import ConfigEntrySet
from meshfed.fsm.config_entries import content_hash
from meshfed.fsm.records import ConfigEntry
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.endpoints.intention import CAS_ATTEMPTS, IntentionEndpoint
from tests.twins.server import ServerTwin, server_twin


class DC:
    def __init__(self, name: str, default_allow: bool = True) -> None:
        self.twin: ServerTwin = server_twin(name)
        self.endpoint = IntentionEndpoint(
            primary_datacenter="dc1", state=self.twin.state, raft=self.twin.raft, router=self.twin.router,
            queries=self.twin.queries, default_allow=default_allow,
        )

    async def apply(self, **body: Any) -> Any:
        _, reply = await self.endpoint.apply(RequestHeader(), body)
        return reply

    async def upsert(self, source: str, destination: str, action: str = "allow") -> Any:
        return await self.apply(op="upsert-exact", source=source, destination=destination,
                                intention={"Action": action})

    async def pairs(self) -> list[tuple[str, str, str]]:
        _, views = await self.endpoint.list(RequestHeader(), {})
        return [(v["SourceName"], v["DestinationName"], v["Action"]) for v in views]

    def sources_of(self, destination: str) -> list[str]:
        _, record = self.twin.state.config_entry_get("service-intentions", destination)
        return [] if record is None else sorted(s["Name"] for s in record.body["Sources"])


def test_exact_writes_are_views_over_one_service_intentions_entry_per_destination() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        assert await dc1.upsert("web", "db") is True
        assert await dc1.upsert("api", "db", "deny") is True
        assert dc1.sources_of("db") == ["api", "web"]
        assert sorted(await dc1.pairs()) == [("api", "db", "deny"), ("web", "db", "allow")]
        _, found = await dc1.endpoint.get(RequestHeader(), {"source": "api", "destination": "db"})
        assert found["Action"] == "deny"
        await dc1.apply(op="delete-exact", source="api", destination="db")
        await dc1.apply(op="delete-exact", source="web", destination="db")
        assert dc1.twin.state.config_entry_get("service-intentions", "db")[1] is None, "last source deletes the entry"
        assert await dc1.apply(op="delete-exact", source="web", destination="db") is True

    asyncio.run(scenario())


def test_legacy_create_update_delete_by_id() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        created = await dc1.apply(op="create", intention={"SourceName": "web", "DestinationName": "db",
                                                          "Action": "allow"})
        intention_id = created["ID"]
        _, view = await dc1.endpoint.get(RequestHeader(), {"id": intention_id})
        assert (view["ID"], view["SourceName"], view["Action"]) == (intention_id, "web", "allow")
        updated = await dc1.apply(op="update", id=intention_id, intention={"SourceName": "web", "DestinationName": "db",
                                                                            "Action": "deny"})
        assert updated == {"ID": intention_id}
        assert await dc1.pairs() == [("web", "db", "deny")]
        assert await dc1.apply(op="delete", id=intention_id) is True
        assert await dc1.pairs() == []
        with pytest.raises(RPCError) as caught:
            await dc1.apply(op="delete", id=intention_id)
        assert caught.value.code == grpc.StatusCode.NOT_FOUND

    asyncio.run(scenario())


def test_a_write_that_loses_the_cas_race_is_retried_on_fresh_state() -> None:
    """Another write to the same destination between read and commit must not be overwritten."""
    dc1 = DC("dc1")

    async def scenario() -> None:
        await dc1.upsert("web", "db")
        _, current = dc1.twin.state.config_entry_get("service-intentions", "db")
        assert current is not None
        racing = dict(current.body, Sources=[*current.body["Sources"], {"Name": "cache", "Action": "allow"}])

        def concurrent_write() -> None:
            record = ConfigEntry(kind="service-intentions", name="db", body=racing, hash=content_hash(racing))
            assert dc1.twin.raft.apply_now(ConfigEntrySet(record, cas=current.modify_index)).value

        dc1.twin.raft.before_apply = concurrent_write
        assert await dc1.upsert("api", "db") is True
        assert dc1.sources_of("db") == ["api", "cache", "web"]
        sets = [c for c in dc1.twin.raft.commands if isinstance(c, ConfigEntrySet)]
        assert [s.cas for s in sets] == [0, 1, 1, 2], "first write, the racer, the lost attempt, the retry"

    asyncio.run(scenario())


def test_a_write_that_keeps_losing_gives_up_with_aborted() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        await dc1.upsert("web", "db")
        lost = 0

        def concurrent_write() -> None:
            nonlocal lost
            lost += 1
            _, current = dc1.twin.state.config_entry_get("service-intentions", "db")
            assert current is not None
            body = dict(current.body, Meta={"racer": str(lost)})
            record = ConfigEntry(kind="service-intentions", name="db", body=body, hash=content_hash(body))
            dc1.twin.raft.apply_now(ConfigEntrySet(record, cas=current.modify_index))
            dc1.twin.raft.before_apply = concurrent_write

        dc1.twin.raft.before_apply = concurrent_write
        with pytest.raises(RPCError) as caught:
            await dc1.upsert("api", "db")
        assert caught.value.code == grpc.StatusCode.ABORTED and lost == CAS_ATTEMPTS
        assert "api" not in dc1.sources_of("db")

    asyncio.run(scenario())


def test_writes_at_a_secondary_land_in_the_primary() -> None:
    dc1, dc2 = DC("dc1"), DC("dc2")
    dc2.twin.router.peers = {"dc1": dc1.endpoint.handlers()}

    async def scenario() -> None:
        await dc2.upsert("web", "db")
        assert dc1.sources_of("db") == ["web"] and dc2.sources_of("db") == []
        assert dc2.twin.router.calls == [("Intention/Apply", "dc1", True)]

    asyncio.run(scenario())


def test_check_and_match_read_the_same_views() -> None:
    dc1 = DC("dc1", default_allow=False)

    async def scenario() -> None:
        await dc1.upsert("web", "db")
        await dc1.upsert("*", "db", "deny")

        async def allowed(source: str, destination: str) -> bool:
            _, body = await dc1.endpoint.check(RequestHeader(), {"source": source, "destination": destination})
            return bool(body["Allowed"])

        assert await allowed("web", "db") is True
        assert await allowed("api", "db") is False
        assert await allowed("web", "cache") is False, "no intention: the default (deny here)"
        _, matched = await dc1.endpoint.match(RequestHeader(), {"by": "destination", "names": ["db"]})
        assert [v["SourceName"] for v in matched["db"]] == ["web", "*"]

    asyncio.run(scenario())


def test_authorize_follows_precedence_and_the_default_with_consuls_reasons() -> None:
    dc1 = DC("dc1", default_allow=False)
    uri = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc2/svc/{}"

    async def scenario() -> None:
        await dc1.upsert("web", "db")
        await dc1.upsert("*", "db", "deny")

        async def decide(client: str, target: str) -> dict[str, object]:
            _, body = await dc1.endpoint.authorize(RequestHeader(), {"target": target, "client_uri": uri.format(client)})
            return body

        exact = await decide("web", "db")
        assert exact["Authorized"] is True and str(exact["Reason"]).startswith("Matched L4 intention: default/web =>")
        wildcard = await decide("api", "db")
        assert wildcard["Authorized"] is False and "default/* => default/db" in str(wildcard["Reason"])
        assert await decide("web", "cache") == {"Authorized": False, "Reason": "Default behavior configured by ACLs"}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("method", "body", "code", "message"),
    [
        ("apply", {"op": "rename"}, grpc.StatusCode.INVALID_ARGUMENT, "invalid intention operation: 'rename'"),
        ("apply", {"op": "upsert-exact", "source": "web"}, grpc.StatusCode.INVALID_ARGUMENT,
         "required query parameter 'destination' not set"),
        ("apply", {"op": "update", "id": "0f7e8c6a-0000-4000-8000-000000000000", "intention": {}},
         grpc.StatusCode.NOT_FOUND, "Cannot modify non-existent intention"),
        ("match", {"by": "destination"}, grpc.StatusCode.INVALID_ARGUMENT, "required query parameter 'name' not set"),
        ("check", {"source": "web"}, grpc.StatusCode.INVALID_ARGUMENT, "required query parameter 'destination'"),
    ],
)
def test_bad_requests_name_the_problem(method: str, body: Any, code: grpc.StatusCode, message: str) -> None:
    dc1 = DC("dc1")
    with pytest.raises(RPCError) as caught:
        asyncio.run(getattr(dc1.endpoint, method)(RequestHeader(), body))
    assert caught.value.code == code and message in caught.value.message
    assert dc1.twin.raft.commands == []

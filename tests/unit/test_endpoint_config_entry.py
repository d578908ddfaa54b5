"""ConfigEntry.* endpoint (reference/connect-data.md §B.2-B.6) on the shared twins: real state
machine and blocking-query engine, a router twin per datacenter."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from meshfed.fsm import ConfigEntrySet
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.endpoints.config_entry import ConfigEntryEndpoint
from tests.twins.server import ServerTwin, server_twin

WEB_DEFAULTS = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
EXPORTS = {"Kind": "exported-services", "Name": "default",
           "Services": [{"Name": "web", "Consumers": [{"Peer": "other"}]}]}


class DC:
    def __init__(self, name: str) -> None:
        self.twin: ServerTwin = server_twin(name)
        self.endpoint = ConfigEntryEndpoint(
            datacenter=name, primary_datacenter="dc1", state=self.twin.state, raft=self.twin.raft,
            router=self.twin.router, queries=self.twin.queries,
        )

    def writes(self) -> list[ConfigEntrySet]:
        return [c for c in self.twin.raft.commands if isinstance(c, ConfigEntrySet)]

    async def put(self, entry: dict[str, Any], cas: int | None = None, header: RequestHeader | None = None) -> Any:
        _, reply = await self.endpoint.apply(header or RequestHeader(), {"entry": entry, "cas": cas})
        return reply


def federate(*dcs: DC) -> None:
    for dc in dcs:
        dc.twin.router.peers = {other.twin.datacenter: other.endpoint.handlers() for other in dcs if other is not dc}


def test_an_unchanged_upsert_answers_true_without_a_raft_write() -> None:
    """§B.2 step 5: equal content short-circuits before the CAS check and before the log."""
    dc1 = DC("dc1")

    async def scenario() -> None:
        assert await dc1.put(dict(WEB_DEFAULTS)) is True
        assert await dc1.put({"kind": "Service-Defaults", "name": "web", "protocol": "http"}) is True
        assert await dc1.put(dict(WEB_DEFAULTS), cas=999) is True, "no-op wins over a stale cas"
        assert len(dc1.writes()) == 1
        _, body = await dc1.endpoint.get(RequestHeader(), {"kind": "service-defaults", "name": "web"})
        assert body["entry"]["Protocol"] == "http" and body["entry"]["ModifyIndex"] == 1

    asyncio.run(scenario())


def test_cas_refuses_a_stale_index_and_accepts_the_current_one() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        assert await dc1.put(dict(WEB_DEFAULTS), cas=0) is True
        changed = {**WEB_DEFAULTS, "Protocol": "grpc"}
        assert await dc1.put(changed, cas=0) is False
        assert await dc1.put(changed, cas=1) is True
        _, stored = dc1.twin.state.config_entry_get("service-defaults", "web")
        assert stored is not None and stored.body["Protocol"] == "grpc"

    asyncio.run(scenario())


def test_writes_at_a_secondary_land_in_the_primary() -> None:
    """operators.md #6327: secondaries change config entries only through replication."""
    dc1, dc2 = DC("dc1"), DC("dc2")
    federate(dc1, dc2)

    async def scenario() -> None:
        assert await dc2.put(dict(WEB_DEFAULTS)) is True
        assert dc1.twin.state.config_entry_get("service-defaults", "web")[1] is not None
        assert dc2.twin.state.config_entry_get("service-defaults", "web")[1] is None
        _, deleted = await dc2.endpoint.delete(RequestHeader(), {"kind": "service-defaults", "name": "web"})
        assert deleted is True and dc1.twin.state.config_entry_get("service-defaults", "web")[1] is None
        assert [call[1] for call in dc2.twin.router.calls] == ["dc1", "dc1"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("datacenter", "message"),
    [
        ("", "exported-services writes in secondary datacenters must target the primary datacenter explicitly."),
        ("dc2", "exported-services writes must not target secondary datacenters."),
    ],
)
def test_exported_services_from_a_secondary_must_name_the_primary(datacenter: str, message: str) -> None:
    """§B.4."""
    dc1, dc2 = DC("dc1"), DC("dc2")
    federate(dc1, dc2)
    with pytest.raises(RPCError) as caught:
        asyncio.run(dc2.put(dict(EXPORTS), header=RequestHeader(datacenter=datacenter)))
    assert (caught.value.code, caught.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert asyncio.run(dc2.put(dict(EXPORTS), header=RequestHeader(datacenter="dc1"))) is True
    assert dc1.twin.state.config_entry_get("exported-services", "default")[1] is not None


def test_deleting_a_missing_entry_is_true_without_a_raft_write() -> None:
    dc1 = DC("dc1")
    _, reply = asyncio.run(dc1.endpoint.delete(RequestHeader(), {"kind": "mesh", "name": "mesh"}))
    assert reply is True and dc1.twin.raft.commands == []


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        # decoding errors carry Consul's prefix; validation errors do not
        ("apply", {"entry": {"Kind": "service-defaults", "Name": "web", "Protocol": 5}},
         "Request decoding failed: Protocol: must be a string"),
        ("apply", {"entry": {"Kind": "service-defaults", "Name": "web", "Prtocol": "http"}},
         'Request decoding failed: Prtocol: invalid config key "Prtocol"'),
        ("apply", {"entry": {"Name": "web"}}, "Request decoding failed: Kind: Payload does not contain a kind"),
        ("apply", {"entry": "web"}, "the entry must be a JSON object"),
        ("apply", {"entry": WEB_DEFAULTS, "cas": -1}, "cas: must be a non-negative integer"),
        ("get", {"kind": "service-router", "name": "web"}, "invalid config entry kind: service-router"),
        ("delete", {"kind": "mesh", "name": ""}, "Name: must be set"),
        ("list", {"kind": None}, "invalid config entry kind: None"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(method: str, body: Any, message: str) -> None:
    dc1 = DC("dc1")
    with pytest.raises(RPCError) as caught:
        asyncio.run(getattr(dc1.endpoint, method)(RequestHeader(), body))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and message in caught.value.message
    assert dc1.twin.raft.commands == []


def test_a_validation_error_is_not_called_a_decoding_error_and_any_protocol_is_accepted() -> None:
    dc1 = DC("dc1")
    with pytest.raises(RPCError) as caught:
        asyncio.run(dc1.put({"Kind": "service-defaults", "Name": "*"}))
    assert caught.value.message == "Name: must be the name of a service, not a wildcard"
    assert asyncio.run(dc1.put({"Kind": "service-defaults", "Name": "dns", "Protocol": "udp"})) is True
    _, stored = dc1.twin.state.config_entry_get("service-defaults", "dns")
    assert stored is not None and stored.body["Protocol"] == "udp"


def test_blocking_get_of_a_missing_entry_returns_when_it_is_written() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        await dc1.put({"Kind": "service-defaults", "Name": "api"})
        header = RequestHeader(min_query_index=1, max_query_time=5.0)
        waiting = asyncio.create_task(dc1.endpoint.get(header, {"kind": "service-defaults", "name": "web"}))
        await asyncio.sleep(0.01)
        await dc1.put({"Kind": "service-defaults", "Name": "db"})
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await dc1.put(dict(WEB_DEFAULTS))
        meta, body = await asyncio.wait_for(waiting, 1.0)
        assert meta.index == 3 and body["entry"]["Name"] == "web"

    asyncio.run(scenario())


def test_list_is_per_kind_and_list_all_is_every_kind() -> None:
    dc1 = DC("dc1")

    async def scenario() -> None:
        for entry in ({"Kind": "service-defaults", "Name": "web"}, {"Kind": "service-defaults", "Name": "api"},
                      {"Kind": "proxy-defaults", "Name": "global"}):
            await dc1.put(entry)
        _, listed = await dc1.endpoint.list(RequestHeader(), {"kind": "SERVICE-DEFAULTS"})
        _, everything = await dc1.endpoint.list_all(RequestHeader(), {})
        assert [e["Name"] for e in listed] == ["api", "web"]
        assert sorted((e["Kind"], e["Name"]) for e in everything) == [
            ("proxy-defaults", "global"), ("service-defaults", "api"), ("service-defaults", "web")]

    asyncio.run(scenario())


def test_mesh_gateway_mode_names_the_level_that_set_it() -> None:
    """§B.6: upstream > service instance > service-defaults > proxy-defaults."""
    dc1 = DC("dc1")

    async def mode(**query: str) -> tuple[str, str]:
        _, body = await dc1.endpoint.mesh_gateway_mode(RequestHeader(), {"service": "web", "upstream": "db", **query})
        return body["Mode"], body["Source"]

    async def scenario() -> None:
        assert await mode() == ("default", "default")
        await dc1.put({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}})
        assert await mode() == ("local", "proxy-defaults")
        await dc1.put({"Kind": "service-defaults", "Name": "web", "MeshGateway": {"Mode": "remote"}})
        assert await mode() == ("remote", "service-defaults")
        assert await mode(instance_mode="none") == ("none", "service-instance")
        assert await mode(instance_mode="none", upstream_mode="local") == ("local", "upstream")
        with pytest.raises(RPCError, match="instance_mode"):
            await mode(instance_mode="sideways")
        with pytest.raises(RPCError, match="'service' and 'upstream' not set"):
            await dc1.endpoint.mesh_gateway_mode(RequestHeader(), {"service": "web"})

    asyncio.run(scenario())

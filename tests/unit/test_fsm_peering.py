"""Peering state in the FSM: rows, single-use secrets, imports, snapshot (connect-data.md §D.3/§D.4)."""

from __future__ import annotations

import pytest

from meshfed.fsm import CommandError, StateMachine, decode_batch, encode_batch, validate
from meshfed.fsm.peering.commands import (
    PeeringDelete,
    PeeringExchangeSecret,
    PeeringImportSet,
    PeeringTrustBundleWrite,
    PeeringWrite,
)
from meshfed.fsm.peering.records import ImportedService, Peering, PeeringTrustBundle
from meshfed.fsm.records import CheckServiceNode, Node, NodeService


class Log:
    def __init__(self) -> None:
        self.machine = StateMachine()
        self.index = 0

    def apply(self, command):
        self.index += 1
        (result,) = self.machine.apply(self.index, encode_batch([("", command)]))
        return result


def acceptor(name="cluster-02", pid="p-1"):
    return Peering(id=pid, name=name)


def dialer(name="cluster-01", pid="d-1"):
    return Peering(id=pid, name=name, peer_id="remote-id", peer_server_addresses=("127.0.0.1:8300",))


def instance(node="n1", svc="web"):
    return CheckServiceNode(Node(node=node, address="10.0.0.1"), NodeService(id=svc, service=svc, port=80))


def test_write_then_read_defaults_to_pending_and_keeps_create_index():
    log = Log()
    assert log.apply(PeeringWrite(acceptor(), establishment_secret="s1")).ok
    assert log.apply(PeeringWrite(acceptor(), establishment_secret="s2")).ok
    _, row = log.machine.state.peering_get("CLUSTER-02")
    assert (row.state, row.create_index, row.modify_index) == ("PENDING", 1, 2)
    assert log.machine.state.peering_secrets("p-1").establishment == "s2"


def test_name_is_unique_and_mode_cannot_switch():
    log = Log()
    assert log.apply(PeeringWrite(acceptor())).ok
    other = log.apply(PeeringWrite(acceptor(pid="p-2")))
    assert not other.ok and "A peering already exists with the name" in other.error
    switched = log.apply(PeeringWrite(Peering(id="p-1", name="cluster-02", peer_server_addresses=("a:1",))))
    assert not switched.ok and "Cannot switch peering dialing mode from acceptor to dialer" in switched.error


def test_establishment_secret_is_single_use_and_a_new_token_invalidates_the_old():
    log = Log()
    log.apply(PeeringWrite(acceptor(), establishment_secret="old"))
    log.apply(PeeringWrite(acceptor(), establishment_secret="new"))
    stale = log.apply(PeeringExchangeSecret("p-1", "old", "stream-1"))
    assert not stale.ok and stale.error == "invalid peering establishment secret"
    assert log.apply(PeeringExchangeSecret("p-1", "new", "stream-1")).ok
    _, row = log.machine.state.peering_get("cluster-02")
    assert row.state == "ACTIVE"
    assert log.machine.state.peering_secrets("p-1").stream == "stream-1"
    reused = log.apply(PeeringExchangeSecret("p-1", "new", "stream-2"))
    assert not reused.ok and "already established" in reused.error
    assert log.machine.state.peering_secrets("p-1").stream == "stream-1"


def test_bad_names_and_deleting_without_deleted_at_are_refused_before_apply():
    with pytest.raises(CommandError, match="is not a valid peer name"):
        validate(PeeringWrite(Peering(id="x", name="Bad_Name")))
    with pytest.raises(CommandError, match="DeletedAt"):
        validate(PeeringWrite(Peering(id="x", name="ok", state="DELETING")))
    with pytest.raises(CommandError, match="State"):
        validate(PeeringWrite(Peering(id="x", name="ok", state="NOPE")))


def test_imports_replace_per_peer_and_delete_drops_row_secrets_and_imports():
    log = Log()
    log.apply(PeeringWrite(dialer(), stream_secret="s"))
    web = ImportedService("cluster-01", "web", (instance(),))
    db = ImportedService("cluster-01", "db", (instance(svc="db"),))
    assert log.apply(PeeringImportSet("cluster-01", (web, db))).ok
    _, found = log.machine.state.peering_imported("cluster-01", "web")
    assert [s.nodes[0].service.service for s in found] == ["web"]
    _, row = log.machine.state.peering_get("cluster-01")
    assert row.imported_services == ("db", "web")
    assert log.apply(PeeringImportSet("cluster-01", (web,))).ok
    assert [s.service for s in log.machine.state.peering_imported("cluster-01")[1]] == ["web"]
    assert log.apply(PeeringDelete("cluster-01")).value is True
    assert log.machine.state.peering_get("cluster-01")[1] is None
    assert log.machine.state.peering_imported("cluster-01")[1] == []
    assert log.machine.state.peering_secrets("d-1") is None
    assert log.apply(PeeringDelete("cluster-01")).value is False  # idempotent
    refused = log.apply(PeeringImportSet("cluster-01", (web,)))
    assert not refused.ok and 'Peering not found for "cluster-01"' in refused.error


def test_snapshot_restore_keeps_peerings_secrets_and_imports():
    log = Log()
    log.apply(PeeringWrite(acceptor(), establishment_secret="e"))
    log.apply(PeeringWrite(dialer(), stream_secret="s"))
    log.apply(PeeringImportSet("cluster-01", (ImportedService("cluster-01", "web", (instance(),)),)))
    copy = StateMachine()
    copy.restore_data(log.machine.snapshot_data())
    assert copy.state.peering_list()[1] == log.machine.state.peering_list()[1]
    assert copy.state.peering_secrets("p-1").establishment == "e"
    assert copy.state.peering_imported("cluster-01") == log.machine.state.peering_imported("cluster-01")


def test_commands_round_trip_through_the_log_encoding():
    commands = [
        PeeringWrite(dialer(), stream_secret="s"),
        PeeringExchangeSecret("p", "e", "s"),
        PeeringDelete("x"),
        PeeringImportSet("cluster-01", (ImportedService("cluster-01", "web", (instance(),)),)),
        PeeringTrustBundleWrite(bundle()),
    ]
    decoded = [c for _, c in decode_batch(encode_batch([("", c) for c in commands]))]
    assert decoded == commands


def test_a_retried_exchange_is_answered_with_the_secret_that_was_stored():
    """The endpoint builds its answer from the result, so a retry after a leader change (same
    request id, a freshly drawn secret) still hands the dialer the secret the FSM holds."""
    machine = StateMachine()
    machine.apply(1, encode_batch([("", PeeringWrite(acceptor(), establishment_secret="e"))]))
    (first,) = machine.apply(2, encode_batch([("rid", PeeringExchangeSecret("p-1", "e", "stream-1"))]))
    (retry,) = machine.apply(3, encode_batch([("rid", PeeringExchangeSecret("p-1", "e", "stream-2"))]))
    assert first.value == retry.value == "stream-1"
    assert machine.state.peering_secrets("p-1").stream == "stream-1"
    (token,) = machine.apply(4, encode_batch([("t", PeeringWrite(acceptor(), establishment_secret="e2"))]))
    assert token.value == {"id": "p-1", "establishment_secret": "e2"}


def bundle(peer="cluster-01"):
    return PeeringTrustBundle(peer, "abc.consul", ("-----BEGIN CERTIFICATE-----",), "cluster-02", "dc1",
                              ("127.0.0.9:8443",))


def test_trust_bundle_is_stored_restored_and_dropped_on_delete_and_terminate():
    log = Log()
    assert not log.apply(PeeringTrustBundleWrite(bundle())).ok  # no such peering
    assert not log.apply(PeeringTrustBundleWrite(PeeringTrustBundle("cluster-01", "td"))).ok  # no roots
    log.apply(PeeringWrite(dialer(), stream_secret="s"))
    assert log.apply(PeeringTrustBundleWrite(bundle())).ok
    stored = log.machine.state.peering_trust_bundle("CLUSTER-01")
    assert stored.same_content(bundle()) and stored.modify_index == log.index
    copy = StateMachine()
    copy.restore_data(log.machine.snapshot_data())
    assert copy.state.peering_trust_bundles() == log.machine.state.peering_trust_bundles()
    # The peer deleted its side: TERMINATED drops the bundle, and a late round cannot bring it back.
    _, row = log.machine.state.peering_get("cluster-01")
    log.apply(PeeringWrite(Peering(**{**row.__dict__, "state": "TERMINATED"})))
    assert log.machine.state.peering_trust_bundle("cluster-01") is None
    assert log.apply(PeeringTrustBundleWrite(bundle())).value is False
    assert log.machine.state.peering_trust_bundles()[1] == []
    log.apply(PeeringWrite(acceptor(), establishment_secret="e"))
    log.apply(PeeringTrustBundleWrite(bundle("cluster-02")))
    log.apply(PeeringDelete("cluster-02"))
    assert log.machine.state.peering_trust_bundles()[1] == []


def test_imported_services_count_services_not_their_synthetic_sidecar_sets():
    """The exporter sends `<svc>-sidecar-proxy` beside a mesh service (server/peering/exports.py);
    ImportedServices lists the services a peer shares, as the exporter's ExportedServices does."""
    log = Log()
    log.apply(PeeringWrite(dialer(), stream_secret="s"))
    proxy = CheckServiceNode(Node(node="gw", address="10.0.0.9"), NodeService(
        id="web-sidecar-proxy", service="web-sidecar-proxy", kind="connect-proxy", port=443,
        proxy={"DestinationServiceName": "web"}))
    imports = (ImportedService("cluster-01", "web", (instance(),)),
               ImportedService("cluster-01", "web-sidecar-proxy", (proxy,)))
    assert log.apply(PeeringImportSet("cluster-01", imports)).ok
    assert log.machine.state.peering_get("cluster-01")[1].imported_services == ("web",)
    assert len(log.machine.state.peering_imported("cluster-01")[1]) == 2  # stored, only not counted

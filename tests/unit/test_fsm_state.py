"""Apply semantics and reads of the state machine, one rule per test.

Federation-state rules cite reference/federation.md §2; the rest pin the brief in notes/fsm.md.
"""

from __future__ import annotations

import dataclasses
import threading

import msgpack
import pytest

from meshfed.fsm import (
    DEDUPE_WINDOW,
    TABLES,
    CatalogDeregister,
    CatalogRegister,
    CheckUpdate,
    FederationStateBatchUpsert,
    FederationStateDelete,
    FederationStateUpsert,
    Noop,
    Result,
    ServerRegister,
    StateMachine,
    encode_batch,
)
from meshfed.fsm.records import (
    KIND_MESH_GATEWAY,
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
)


class Log:
    """Feeds a machine entries at increasing indexes, like the Raft adapter would."""

    def __init__(self, machine: StateMachine | None = None) -> None:
        self.machine = machine or StateMachine()
        self.index = 0
        self.notifications: list[tuple[frozenset[str], int]] = []
        self.machine.subscribe(lambda tables, index: self.notifications.append((tables, index)))

    def apply(self, *commands, request_id: str = "") -> list[Result]:
        self.index += 1
        return self.machine.apply(self.index, encode_batch([(request_id, c) for c in commands]))

    def one(self, command, request_id: str = "") -> Result:
        [result] = self.apply(command, request_id=request_id)
        return result

    @property
    def state(self):
        return self.machine.state


def node(name="n1", address="10.0.0.1", **kw) -> Node:
    return Node(node=name, address=address, **kw)


def service(sid="web", name="web", **kw) -> NodeService:
    return NodeService(id=sid, service=name, **kw)


def check(cid="c1", node_name="n1", **kw) -> HealthCheck:
    return HealthCheck(node=node_name, check_id=cid, **kw)


def gateway(name="gw1") -> CheckServiceNode:
    return CheckServiceNode(
        node=node(name), service=service("mgw", "mesh-gateway", kind=KIND_MESH_GATEWAY, port=8443)
    )


@pytest.fixture
def log() -> Log:
    return Log()


# ---- catalog register -------------------------------------------------------------------------


def test_new_records_get_the_entry_index_as_create_and_modify(log):
    log.apply(Noop())
    assert log.one(CatalogRegister(node(), service(), (check(service_id="web"),))).ok
    _, stored_node, [stored_service] = log.state.catalog_node("n1")
    stored_check = log.state.get_check("n1", "c1")
    for record in (stored_node, stored_service, stored_check):
        assert (record.create_index, record.modify_index) == (2, 2)
    assert log.state.index("nodes", "services", "checks") == 2
    assert log.state.index("federation_states") == 0


def test_identical_register_touches_nothing(log):
    command = CatalogRegister(node(), service(tags=("a",)), (check(service_id="web", status="passing"),))
    log.one(command)
    log.notifications.clear()
    assert log.one(command).ok
    assert log.state.index() == 1
    assert log.notifications == []
    assert log.state.get_check("n1", "c1").modify_index == 1


def test_changed_register_replaces_keeping_create_index(log):
    log.one(CatalogRegister(node(), service(port=80)))
    log.one(CatalogRegister(node(address="10.0.0.2"), service(port=81)))
    index, stored_node, [stored_service] = log.state.catalog_node("n1")
    assert index == 2
    assert (stored_node.address, stored_node.create_index, stored_node.modify_index) == ("10.0.0.2", 1, 2)
    assert (stored_service.port, stored_service.create_index, stored_service.modify_index) == (81, 1, 2)


def test_only_the_changed_table_is_bumped(log):
    log.one(CatalogRegister(node(), service(port=80)))
    log.one(CatalogRegister(node(), service(port=81)))
    assert log.state.index("nodes") == 1
    assert log.state.index("services") == 2
    assert log.notifications[-1] == (frozenset({"services"}), 2)


def test_check_on_missing_service_is_invalid_and_changes_nothing(log):
    result = log.one(CatalogRegister(node(), service("web"), (check(service_id="db"),)))
    assert (result.ok, result.code) == (False, "invalid")
    assert "Check.ServiceID" in result.error
    assert log.state.catalog_nodes() == (0, [])
    assert log.state.index() == 0
    assert log.notifications == []


def test_check_may_name_a_service_registered_earlier(log):
    log.one(CatalogRegister(node(), service("web", tags=("v1",))))
    assert log.one(CatalogRegister(node(), checks=(check(service_id="web"),))).ok
    stored = log.state.get_check("n1", "c1")
    assert (stored.service_name, stored.service_tags) == ("web", ("v1",))


def test_check_service_fields_come_from_the_service_and_status_defaults_to_critical(log):
    sent = check(service_id="web", service_name="wrong", service_tags=("x",), status="")
    log.one(
        CatalogRegister(node(), service("web", tags=("t1",)), (sent, check("node-check", service_name="x")))
    )
    stored = log.state.get_check("n1", "c1")
    assert (stored.service_name, stored.service_tags, stored.status) == ("web", ("t1",), "critical")
    node_check = log.state.get_check("n1", "node-check")
    assert (node_check.service_name, node_check.service_tags) == ("", ())


def test_reregistered_service_refreshes_its_checks_copied_tags(log):
    log.one(CatalogRegister(node(), service("web", tags=("v1",)), (check(service_id="web"),)))
    log.one(CatalogRegister(node(), service("web", tags=("v2",))))
    stored = log.state.get_check("n1", "c1")
    assert (stored.service_tags, stored.modify_index) == (("v2",), 2)
    assert log.state.index("checks") == 2


def test_node_names_are_case_insensitive_and_keep_their_case(log):
    log.one(CatalogRegister(node("Node-A")))
    log.one(CatalogRegister(node("node-a")))  # is_same ignores case: untouched
    assert [n.node for n in log.state.catalog_nodes()[1]] == ["Node-A"]
    assert log.state.catalog_node("NODE-A")[1].node == "Node-A"
    assert log.state.index("nodes") == 1


def test_service_ids_are_case_sensitive(log):
    log.one(CatalogRegister(node(), service("web")))
    log.one(CatalogRegister(node(), service("Web", name="Web")))
    assert [s.id for s in log.state.catalog_node("n1")[2]] == ["Web", "web"]
    assert log.state.catalog_service_nodes("WEB")[1] == []


def test_invalid_shape_is_rejected_in_apply_too(log):
    result = log.one(CatalogRegister(node(), service(port=70000)))
    assert (result.ok, result.code) == (False, "invalid")
    assert "Service.Port" in result.error
    assert log.state.index() == 0


# ---- catalog deregister -----------------------------------------------------------------------


def registered(log: Log) -> None:
    log.one(
        CatalogRegister(
            node(),
            service("web"),
            (check("svc", service_id="web"), check("node-check")),
        )
    )
    log.one(CatalogRegister(node(), service("db")))


def test_deregister_check(log):
    registered(log)
    log.one(CatalogDeregister("n1", check_id="node-check"))
    assert log.state.get_check("n1", "node-check") is None
    assert log.state.index("checks") == 3
    assert log.state.index("services") == 2


def test_deregister_service_removes_its_checks(log):
    registered(log)
    log.one(CatalogDeregister("N1", service_id="web"))
    assert [s.id for s in log.state.catalog_node("n1")[2]] == ["db"]
    assert log.state.get_check("n1", "svc") is None
    assert log.state.get_check("n1", "node-check") is not None
    assert log.notifications[-1] == (frozenset({"services", "checks"}), 3)


def test_deregister_node_removes_everything_on_it(log):
    registered(log)
    log.one(CatalogDeregister("n1"))
    assert log.state.catalog_node("n1")[1:] == (None, [])
    assert log.state.checks_of_type("") == []
    assert log.notifications[-1] == (frozenset({"nodes", "services", "checks"}), 3)


@pytest.mark.parametrize(
    "command",
    [
        CatalogDeregister("ghost"),
        CatalogDeregister("n1", service_id="ghost"),
        CatalogDeregister("n1", check_id="x"),
    ],
)
def test_deregister_of_missing_target_is_ok_without_bump(log, command):
    registered(log)
    log.notifications.clear()
    assert log.one(command).ok
    assert log.state.index() == 2
    assert log.notifications == []


# ---- store version: what shared query results are checked against -----------------------------


def test_store_version_moves_with_every_write_even_one_that_moves_no_index(log):
    log.one(CatalogRegister(node(), checks=(check("ttl", type="ttl", status="passing"),)))
    before, indexes = log.state.version, log.state.index()
    log.state.catalog_services()  # reads never move it
    assert log.state.version == before
    assert log.one(CheckUpdate("n1", "ttl", "passing", at=200.0)).ok  # a heartbeat: no index moves
    assert log.state.index() == indexes and log.state.version > before
    exported, at_export = log.state.export(), log.state.version
    log.state.load(exported)
    assert log.state.version > at_export


# ---- check update -----------------------------------------------------------------------------


def test_check_update_of_missing_check_is_not_found(log):
    result = log.one(CheckUpdate("n1", "ttl", "passing", at=1.0))
    assert (result.ok, result.code) == (False, "not_found")


def test_check_update_changing_status_bumps(log):
    log.one(CatalogRegister(node(), checks=(check("ttl", type="ttl", status="critical"),)))
    assert log.one(CheckUpdate("n1", "ttl", "passing", "fine", at=100.0)).ok
    stored = log.state.get_check("n1", "ttl")
    assert (stored.status, stored.output, stored.status_updated_at) == ("passing", "fine", 100.0)
    assert (stored.create_index, stored.modify_index) == (1, 2)
    assert log.state.index("checks") == 2


def test_check_update_heartbeat_only_moves_the_timestamp(log):
    log.one(CatalogRegister(node(), checks=(check("ttl", type="ttl", status="passing"),)))
    log.notifications.clear()
    assert log.one(CheckUpdate("n1", "ttl", "passing", at=200.0)).ok
    stored = log.state.get_check("N1", "ttl")
    assert (stored.status_updated_at, stored.modify_index) == (200.0, 1)
    assert log.state.index("checks") == 1
    assert log.notifications == []
    assert log.state.checks_of_type("ttl") == [stored]


# ---- federation states (reference/federation.md §2) -------------------------------------------


def test_federation_state_upsert_sets_indexes_and_returns_true(log):
    result = log.one(FederationStateUpsert(FederationState("dc2", (gateway(),))))
    assert result == Result(ok=True, value=True)
    index, stored = log.state.federation_state_get("DC2")
    assert index == 1
    assert (stored.create_index, stored.modify_index, stored.primary_modify_index) == (1, 1, 1)


def test_federation_state_identical_upsert_still_bumps(log):
    """§2.2 step 4: table index set even if the content is identical."""
    state = FederationState("dc2", (gateway(),))
    log.one(FederationStateUpsert(state))
    log.one(FederationStateUpsert(state))
    index, stored = log.state.federation_state_get("dc2")
    assert index == 2
    assert (stored.create_index, stored.modify_index, stored.primary_modify_index) == (1, 2, 2)
    assert log.notifications[-1] == (frozenset({"federation_states"}), 2)


def test_federation_state_keeps_a_replicated_primary_modify_index(log):
    """§2.2 step 3: a non-zero incoming PrimaryModifyIndex is kept as-is."""
    log.one(FederationStateUpsert(FederationState("dc1", primary_modify_index=77)))
    assert log.state.federation_state_get("dc1")[1].primary_modify_index == 77


def test_federation_state_case_insensitive_row_replaced_whole(log):
    log.one(FederationStateUpsert(FederationState("DC2", (gateway(),), updated_at="t1")))
    log.one(FederationStateUpsert(FederationState("dc2")))
    index, states = log.state.federation_state_list()
    assert [(s.datacenter, s.mesh_gateways, s.create_index) for s in states] == [("dc2", (), 1)]


def test_federation_state_missing_datacenter_is_invalid(log):
    result = log.one(FederationStateUpsert(FederationState("")))
    assert result == Result(ok=False, error="missing datacenter on federation state", code="invalid")


def test_federation_state_batch_upsert_is_sequential_upserts_at_one_index(log):
    """A resync's batch: every state lands at the entry's index, as single upserts would (create
    index kept for a row that existed, primary index kept when given), a DC named twice ends with
    the later state, one notification, and the change log names each DC once."""
    log.one(FederationStateUpsert(FederationState("dc2", updated_at="t0")))
    result = log.one(FederationStateBatchUpsert((
        FederationState("DC2", (gateway("a"),), updated_at="t1", primary_modify_index=40),
        FederationState("dc3", updated_at="t1"),
        FederationState("dc3", (gateway("b"),), updated_at="t2", primary_modify_index=41),
    )))
    assert result == Result(ok=True, value=3)
    index, states = log.state.federation_state_list()
    assert index == 2
    assert [(s.datacenter, s.create_index, s.modify_index, s.primary_modify_index, s.updated_at) for s in states] == [
        ("DC2", 1, 2, 40, "t1"), ("dc3", 2, 2, 41, "t2")]
    assert states[1].mesh_gateways == (gateway("b"),)
    assert log.notifications[-1] == (frozenset({"federation_states"}), 2)
    _, delta = log.state.federation_state_changes(1)
    assert sorted(s.datacenter.lower() for s in delta.states) == ["dc2", "dc3"]


def test_federation_state_batch_upsert_with_a_bad_state_changes_nothing(log):
    log.one(FederationStateUpsert(FederationState("dc2", updated_at="t0")))
    result = log.one(FederationStateBatchUpsert((FederationState("dc2", updated_at="t1"), FederationState(""))))
    assert not result.ok and result.code == "invalid" and "States[1]" in result.error
    assert log.state.federation_state_get("dc2")[1].updated_at == "t0"
    assert log.state.index("federation_states") == 1


def test_federation_state_delete(log):
    log.one(FederationStateUpsert(FederationState("dc2")))
    assert log.one(FederationStateDelete("DC2")) == Result(ok=True, value=None)
    assert log.state.federation_state_get("dc2") == (2, None)


def test_federation_state_delete_of_missing_row_does_not_bump(log):
    """§2.3: missing row is a silent no-op, table index not bumped."""
    log.one(FederationStateUpsert(FederationState("dc2")))
    assert log.one(FederationStateDelete("dc9")).ok
    assert log.state.index("federation_states") == 1


def test_federation_state_list_and_mesh_gateways(log):
    log.one(FederationStateUpsert(FederationState("dc3", (gateway("a"), gateway("b")))))
    log.one(FederationStateUpsert(FederationState("DC2", (gateway("c"),))))
    log.one(FederationStateUpsert(FederationState("dc1")))
    assert [s.datacenter for s in log.state.federation_state_list()[1]] == ["dc1", "DC2", "dc3"]
    index, by_dc = log.state.federation_state_mesh_gateways()
    assert index == 3
    assert {dc: [g.node.node for g in gws] for dc, gws in by_dc.items()} == {"DC2": ["c"], "dc3": ["a", "b"]}


# ---- servers, noop ----------------------------------------------------------------------------


def test_server_register_bumps_only_on_change(log):
    info = ServerInfo("S1", "dc1", "10.0.0.1:8300", "10.0.0.1:8502", "10.0.0.1:8500")
    log.one(ServerRegister(info))
    log.one(ServerRegister(info))
    assert log.state.servers()[0] == 1
    log.one(ServerRegister(dataclasses.replace(info, node="s1", http_address="10.0.0.1:9500")))
    index, [stored] = log.state.servers()
    assert (index, stored.node, stored.create_index, stored.modify_index) == (3, "s1", 1, 3)


def test_noop_returns_its_index_and_changes_nothing(log):
    log.apply(Noop())
    assert log.one(Noop()) == Result(ok=True, value=2)
    assert log.state.index() == 0
    assert log.notifications == []
    assert log.machine.last_index == 2


# ---- reads ------------------------------------------------------------------------------------


def health_fixture(log: Log) -> None:
    log.one(
        CatalogRegister(
            node("b"),
            service("web-1", "web", tags=("Primary",)),
            (
                check("serfHealth", "b", status="passing"),
                check("web-1-ttl", "b", service_id="web-1", status="passing"),
            ),
        )
    )
    log.one(
        CatalogRegister(
            node("a"),
            service("web-2", "web", tags=("secondary",)),
            (check("web-2-ttl", "a", service_id="web-2", status="warning"),),
        )
    )
    log.one(CatalogRegister(node("a"), service("web-0", "web"), (check("z", "a", service_id="web-0"),)))
    log.one(CatalogRegister(node("c"), service("mgw", "gateway", kind=KIND_MESH_GATEWAY)))


def test_health_service_nodes_joins_node_and_service_checks(log):
    health_fixture(log)
    index, found = log.state.health_service_nodes("web")
    assert index == 4
    assert [(c.node.node, c.service.id) for c in found] == [("a", "web-0"), ("a", "web-2"), ("b", "web-1")]
    assert [ch.check_id for ch in found[2].checks] == ["serfHealth", "web-1-ttl"]
    assert [ch.check_id for ch in found[1].checks] == ["web-2-ttl"]


def test_health_passing_only_drops_warning_and_critical(log):
    health_fixture(log)
    assert [c.service.id for c in log.state.health_service_nodes("web", passing_only=True)[1]] == ["web-1"]


def test_tag_filter_is_case_insensitive(log):
    health_fixture(log)
    assert [c.service.id for c in log.state.health_service_nodes("web", tag="primary")[1]] == ["web-1"]
    assert [s.id for _, s in log.state.catalog_service_nodes("web", tag="SECONDARY")[1]] == ["web-2"]


def test_catalog_reads(log):
    health_fixture(log)
    assert log.state.catalog_services() == (4, {"gateway": [], "web": ["Primary", "secondary"]})
    index, pairs = log.state.catalog_service_nodes("web")
    assert index == 4 and [(n.node, s.id) for n, s in pairs] == [
        ("a", "web-0"),
        ("a", "web-2"),
        ("b", "web-1"),
    ]
    assert [n.node for n in log.state.catalog_nodes()[1]] == ["a", "b", "c"]


def test_check_service_nodes_by_kind(log):
    health_fixture(log)
    index, found = log.state.check_service_nodes_by_kind(KIND_MESH_GATEWAY)
    assert index == 4 and [(c.node.node, c.service.id) for c in found] == [("c", "mgw")]


def test_index_of_unknown_table_is_an_error(log):
    with pytest.raises(ValueError):
        log.state.index("kv")


# ---- batches, dedupe, replay ------------------------------------------------------------------


def test_commands_in_a_batch_share_the_index_and_keep_their_own_results(log):
    results = log.apply(
        CatalogRegister(node("x")),
        CheckUpdate("x", "missing", "passing"),
        FederationStateUpsert(FederationState("dc2")),
        Noop(),
    )
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[3].value == 1
    assert log.state.catalog_node("x")[1].create_index == 1
    assert log.state.federation_state_get("dc2")[1].create_index == 1
    assert log.notifications == [(frozenset({"nodes", "federation_states"}), 1)]


def test_retried_request_id_returns_the_remembered_result_without_applying(log):
    state = FederationState("dc2")
    assert log.one(FederationStateUpsert(state), request_id="req-1").value is True
    again = log.one(FederationStateUpsert(state), request_id="req-1")
    assert again == Result(ok=True, value=True)
    assert log.state.index("federation_states") == 1  # an upsert would have bumped it


def test_rejections_are_remembered_too(log):
    first = log.one(CheckUpdate("n1", "c", "passing"), request_id="r")
    log.one(CatalogRegister(node(), checks=(check("c"),)))
    assert log.one(CheckUpdate("n1", "c", "passing"), request_id="r") == first


def test_duplicate_request_id_inside_one_batch(log):
    results = log.apply(
        FederationStateUpsert(FederationState("dc2")), FederationStateDelete("dc2"), request_id="same"
    )
    assert results == [Result(ok=True, value=True), Result(ok=True, value=True)]
    assert log.state.federation_state_get("dc2")[1] is not None


def test_empty_request_id_is_never_deduplicated(log):
    assert log.one(Noop()).value == 1
    assert log.one(Noop()).value == 2


def test_dedupe_window_evicts_oldest_first(log):
    entries = [(f"r{i}", Noop()) for i in range(DEDUPE_WINDOW + 1)]
    log.machine.apply(1, encode_batch(entries))
    replayed = log.machine.apply(
        2, encode_batch([("r1", Noop()), ("r0", Noop()), (f"r{DEDUPE_WINDOW}", Noop())])
    )
    assert [r.value for r in replayed] == [1, 2, 1]  # r0 was evicted, so it was applied anew
    # remembering r0 again pushed out the then-oldest id, r1 (no refresh on a hit: FIFO, not LRU)
    assert log.machine.apply(3, encode_batch([("r1", Noop())]))[0].value == 3


def test_replayed_index_is_acknowledged_without_applying(log):
    log.one(CatalogRegister(node()))
    log.one(CatalogRegister(node(address="10.9.9.9")))
    log.notifications.clear()
    replay = log.machine.apply(1, encode_batch([("", CatalogRegister(node("other"))), ("", Noop())]))
    assert replay == [Result(ok=True, value=None), Result(ok=True, value=None)]
    assert [n.node for n in log.state.catalog_nodes()[1]] == ["n1"]
    assert log.machine.last_index == 2
    assert log.notifications == []
    assert log.machine.apply(0, encode_batch([("", Noop())])) == [Result(ok=True, value=None)]


# ---- apply never raises -----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", msgpack.packb([["bogus/1", "", {}]]), "text", None])
def test_undecodable_payload_gives_one_internal_result(log, payload):
    results = log.machine.apply(5, payload)
    assert len(results) == 1 and results[0].code == "internal" and not results[0].ok
    assert log.machine.last_index == 5


def test_a_raising_subscriber_does_not_break_apply(log):
    def explode(tables, index):
        raise RuntimeError("boom")

    log.machine.subscribe(explode)
    assert log.one(CatalogRegister(node())).ok
    assert log.machine.subscriber_errors == 1
    assert log.notifications == [(frozenset({"nodes"}), 1)]  # the other subscriber still ran


def test_subscribers_run_outside_the_store_lock(log):
    seen = []

    def read_back(tables, index):
        if log.state._lock.locked():  # a read would deadlock: record the failure instead
            seen.append("called under the store lock")
        else:
            seen.append(log.state.catalog_nodes()[0])

    log.machine.subscribe(read_back)
    log.one(CatalogRegister(node()))
    assert seen == [1]


def test_readers_never_see_half_an_entry():
    machine = StateMachine()
    stop = threading.Event()
    torn = []

    def reader():
        while not stop.is_set():
            index, nodes = machine.state.catalog_nodes()
            if len(nodes) not in (0, 50):
                torn.append((index, len(nodes)))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for index in range(1, 41):
            commands = [("", CatalogRegister(node(f"n{i}", address=f"10.0.{index}.{i}"))) for i in range(50)]
            if index % 2 == 0:
                commands = [("", CatalogDeregister(f"n{i}")) for i in range(50)]
            machine.apply(index, encode_batch(commands))
    finally:
        stop.set()
        thread.join()
    assert torn == []


def test_a_100_command_batch_applies_in_one_entry():
    machine = StateMachine()
    commands = [
        CatalogRegister(
            node(f"n{i}", address=f"10.0.0.{i}"),
            service(f"web-{i}", "web", port=8080, tags=("a", "b")),
            (check(f"c{i}", f"n{i}", service_id=f"web-{i}", status="passing"),),
        )
        for i in range(100)
    ]
    payload = encode_batch([(f"r{i}", c) for i, c in enumerate(commands)])
    results = machine.apply(1, payload)
    assert len(results) == 100 and all(r.ok for r in results)
    assert machine.state.index("nodes", "services", "checks") == 1


def test_tables_constant_lists_what_notifications_use():
    assert set(TABLES) == {"nodes", "services", "checks", "federation_states", "servers", "config_entries",
                           "connect_ca", "autopilot", "acl_tokens", "acl_policies", "acl_roles",
                           "peerings", "peering_secrets", "peering_imports", "peering_trust_bundles"}


# ---- instances by kind (the leader's anti-entropy asks on every catalog change) -----------------


def test_instances_by_kind_follow_register_kind_change_deregister_node_delete_and_restore(log):
    log.one(CatalogRegister(node=node("gw2"), service=service("mgw", "mesh-gateway", kind=KIND_MESH_GATEWAY)))
    log.one(CatalogRegister(node=node("gw1"), service=service("mgw", "mesh-gateway", kind=KIND_MESH_GATEWAY)))
    log.one(CatalogRegister(node=node("app"), service=service("web", "web")))
    log.one(CatalogRegister(node=node("gw3"), service=service("mgw", "mesh-gateway", kind=KIND_MESH_GATEWAY)))

    def gateways() -> list[str]:
        return [csn.node.node for csn in log.state.check_service_nodes_by_kind(KIND_MESH_GATEWAY)[1]]

    assert gateways() == ["gw1", "gw2", "gw3"]  # by node name, as before
    log.one(CatalogRegister(node=node("gw3"), service=service("mgw", "plain")))  # kind removed
    log.one(CatalogDeregister(node="gw2", service_id="mgw"))
    assert gateways() == ["gw1"]
    log.one(CatalogRegister(node=node("gw4"), service=service("mgw", "mesh-gateway", kind=KIND_MESH_GATEWAY)))
    log.one(CatalogDeregister(node="gw4"))  # the whole node
    assert gateways() == ["gw1"]
    restored = StateMachine()
    restored.restore_data(log.machine.snapshot_data())
    assert [c.node.node for c in restored.state.check_service_nodes_by_kind(KIND_MESH_GATEWAY)[1]] == ["gw1"]


def test_instances_by_kind_do_not_scan_the_catalog(log, monkeypatch):
    """With thousands of ordinary services, the anti-entropy read cost O(catalog) on every write
    (62 % of the leader's time at 9,000 nodes). It now reads only the instances of that kind."""
    for n in range(50):
        log.one(CatalogRegister(node=node(f"app{n}"), service=service("web", "web")))
    log.one(CatalogRegister(node=node("gw1"), service=service("mgw", "mesh-gateway", kind=KIND_MESH_GATEWAY)))
    tables = log.state._tables
    monkeypatch.setattr(type(tables), "instances", lambda self: pytest.fail("scanned every instance"))
    assert [c.node.node for c in log.state.check_service_nodes_by_kind(KIND_MESH_GATEWAY)[1]] == ["gw1"]

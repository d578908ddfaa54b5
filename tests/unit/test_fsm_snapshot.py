"""Snapshots: the on-disk frame, and the properties that make a restored replica a true replica.

The central property: for any log (valid commands, some invalid ones, retried request ids), cut
anywhere, snapshot -> frame -> restore into a fresh machine, then feed the rest of the log to both:
the two machines end identical (snapshot data, every read, every result). Replaying entries that
are already applied (journal replay after a restore) must change nothing.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.fsm import (
    SNAPSHOT_VERSION,
    TABLES,
    ACLBootstrap,
    ACLPolicyDelete,
    ACLPolicySet,
    ACLRoleSet,
    ACLTokenDelete,
    ACLTokenSet,
    CatalogDeregister,
    CatalogRegister,
    CheckUpdate,
    FederationStateBatchUpsert,
    FederationStateDelete,
    FederationStateUpsert,
    Noop,
    Result,
    ServerRegister,
    SnapshotError,
    StateMachine,
    decode_frame,
    encode_batch,
    encode_frame,
)
from meshfed.fsm.acl.records import ACLLink, ACLPolicy, ACLRole, ACLToken, ServiceIdentity
from meshfed.fsm.records import (
    KIND_MESH_GATEWAY,
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
    ServiceAddress,
)

# Small name pools, with case variants, so commands collide on the same rows often.
NODE_NAMES = ["n1", "N1", "n2", "gw"]
SERVICE_IDS = ["web", "db", "mgw"]
CHECK_IDS = ["c1", "c2", "ttl"]
DATACENTERS = ["dc1", "DC1", "dc2", ""]  # "" is invalid
UPSERT_DATACENTERS = ["dc1", "DC1", "dc2", "dc2", "dc3", "dc1", "Dc3", "dc2", "dc1", ""]
STATUSES = ["", "passing", "warning", "critical"]

nodes = st.builds(
    Node,
    node=st.sampled_from(NODE_NAMES),
    address=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    meta=st.sampled_from([{}, {"rack": "a"}]),
    tagged_addresses=st.sampled_from([{}, {"wan": "198.51.100.1"}]),
)
services = st.builds(
    NodeService,
    id=st.sampled_from(SERVICE_IDS),
    service=st.sampled_from(["web", "db", "mesh-gateway"]),
    kind=st.sampled_from(["", KIND_MESH_GATEWAY]),
    tags=st.sampled_from([(), ("a",), ("a", "B")]),
    port=st.sampled_from([80, 8443, 80, 443, 8080, 8443, 80, 443, 8080, 70000]),  # 70000 is invalid
    tagged_addresses=st.sampled_from([{}, {"wan": ServiceAddress("198.51.100.1", 443)}]),
    meta=st.sampled_from([{}, {"consul-wan-federation": "1"}]),
)


@st.composite
def registers(draw) -> CatalogRegister:
    node = draw(nodes)
    checks = draw(
        st.lists(
            st.builds(
                HealthCheck,
                # usually the registered node (any case); sometimes another one, which is invalid
                node=st.sampled_from([node.node] * 5 + [node.node.upper()] * 4 + ["n2"]),
                check_id=st.sampled_from(CHECK_IDS),
                status=st.sampled_from(STATUSES),
                service_id=st.sampled_from(["", "", "web", "db"]),
                type=st.sampled_from(["", "ttl"]),
                status_updated_at=st.sampled_from([0.0, 3.5]),
            ),
            max_size=2,
        )
    )
    return CatalogRegister(node=node, service=draw(st.none() | services), checks=tuple(checks))


gateways = st.builds(CheckServiceNode, node=nodes, service=services)

# ACL rows: few ids and names so sets collide (duplicate names, secret reuse, dangling links).
POLICY_IDS = ["p1", "p2", "00000000-0000-0000-0000-000000000001"]
acl_links = st.lists(st.sampled_from(POLICY_IDS).map(ACLLink), max_size=2).map(tuple)
acl_tokens = st.builds(
    ACLToken,
    accessor_id=st.sampled_from(["a1", "a2", "00000000-0000-0000-0000-000000000002"]),
    secret_id=st.sampled_from(["s1", "s2", "a1", ""]),  # "" is invalid, "a1" collides with an accessor
    policies=acl_links,
    roles=st.lists(st.sampled_from(["r1", "r2"]).map(ACLLink), max_size=1).map(tuple),
    service_identities=st.sampled_from([(), (ServiceIdentity("web", ("dc1",)),)]),
    local=st.booleans(),
    create_time=st.sampled_from(["2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"]),
)
federation_states = st.builds(
    FederationState,
    datacenter=st.sampled_from(UPSERT_DATACENTERS),
    mesh_gateways=st.lists(gateways, max_size=2).map(tuple),
    updated_at=st.sampled_from(["", "2024-01-01T00:00:00Z"]),
    primary_modify_index=st.sampled_from([0, 0, 5]),
)
acl_commands = st.one_of(
    st.builds(
        ACLPolicySet,
        st.builds(
            ACLPolicy,
            id=st.sampled_from(POLICY_IDS),
            name=st.sampled_from(["ops", "read", "global-management", "bad name"]),
            rules=st.sampled_from(["", 'node_prefix "" { policy = "read" }', 'acl = "sudo"']),
        ),
    ),
    st.builds(ACLPolicyDelete, st.sampled_from(POLICY_IDS)),
    st.builds(ACLRoleSet, st.builds(ACLRole, id=st.sampled_from(["r1", "r2"]), name=st.sampled_from(["x", "y"]),
                                    policies=acl_links)),
    st.builds(ACLTokenSet, acl_tokens),
    st.builds(ACLTokenDelete, st.sampled_from(["a1", "a2", "00000000-0000-0000-0000-000000000002"])),
    st.builds(ACLBootstrap, acl_tokens, reset_index=st.sampled_from([0, 0, 1, 2, 3])),
)
commands = st.one_of(
    registers(),
    registers(),
    registers(),
    st.builds(
        CatalogDeregister,
        node=st.sampled_from(NODE_NAMES),
        service_id=st.sampled_from(["", "", "web", "db"]),
        check_id=st.sampled_from(["", "", "c1", "ttl"]),
    ),
    st.builds(
        CheckUpdate,
        node=st.sampled_from(NODE_NAMES),
        check_id=st.sampled_from(CHECK_IDS),
        status=st.sampled_from(["passing", "warning", "critical"] * 3 + ["bogus"]),
        output=st.sampled_from(["", "ok"]),
        at=st.sampled_from([0.0, 1.5, 2.0]),
    ),
    st.builds(FederationStateUpsert, federation_states),
    # Empty batches are invalid: the property covers the rejected command too.
    st.builds(FederationStateBatchUpsert, st.lists(federation_states, max_size=3).map(tuple)),
    st.builds(FederationStateDelete, datacenter=st.sampled_from(DATACENTERS)),
    st.builds(
        ServerRegister,
        st.builds(
            ServerInfo,
            node=st.sampled_from(["s1", "S1", "s2"]),
            datacenter=st.just("dc1"),
            raft_address=st.sampled_from(["10.0.0.1:8300", "10.0.0.9:8300"]),
            rpc_address=st.just("10.0.0.1:8502"),
            http_address=st.just("10.0.0.1:8500"),
        ),
    ),
    st.just(Noop()),
    acl_commands,
)
request_ids = st.sampled_from(["", "", "", "a", "b", "c"])
batches = st.lists(st.tuples(request_ids, commands), min_size=1, max_size=4)


@st.composite
def logs(draw) -> list[tuple[int, bytes]]:
    """Committed entries with strictly increasing indexes and gaps (no-op/membership entries)."""
    index = 0
    entries = []
    for batch in draw(st.lists(batches, max_size=10)):
        index += draw(st.integers(1, 3))
        entries.append((index, encode_batch(batch)))
    return entries


def every_read(machine: StateMachine) -> list:
    state = machine.state
    reads: list = [
        machine.last_index,
        [state.index(table) for table in TABLES],
        state.federation_state_list(),
        state.federation_state_mesh_gateways(),
        state.catalog_nodes(),
        state.catalog_services(),
        state.servers(),
        state.checks_of_type("ttl"),
        state.check_service_nodes_by_kind(KIND_MESH_GATEWAY),
    ]
    for name in NODE_NAMES:
        reads.append(state.catalog_node(name))
        reads.extend(state.get_check(name, check_id) for check_id in CHECK_IDS)
    for name in ("web", "db", "mesh-gateway"):
        reads.append(state.catalog_service_nodes(name))
        reads.append(state.catalog_service_nodes(name, tag="b"))
        reads.append(state.health_service_nodes(name))
        reads.append(state.health_service_nodes(name, passing_only=True, tag="a"))
    reads.extend(state.federation_state_get(dc) for dc in DATACENTERS)
    reads += [state.acl_tokens(), state.acl_policies(), state.acl_roles(), state.acl_bootstrap_state(),
              state.acl_token_by_secret("s1"), state.acl_policy_by_name("ops"), state.acl_role_by_name("x")]
    return reads


def assert_index_invariants(machine: StateMachine) -> None:
    """Every record's indexes are >= 1, create <= modify <= its table index <= last_index."""
    state = machine.state
    rows = {
        "nodes": state.catalog_nodes()[1],
        "services": [s for n in state.catalog_nodes()[1] for s in state.catalog_node(n.node)[2]],
        "checks": state.checks_of_type("") + state.checks_of_type("ttl"),
        "federation_states": state.federation_state_list()[1],
        "servers": state.servers()[1],
        # the built-ins exist from the start, at index 0
        "acl_tokens": [t for t in state.acl_tokens()[1] if t.create_index],
        "acl_policies": [p for p in state.acl_policies()[1] if p.create_index],
        "acl_roles": state.acl_roles()[1],
    }
    for table, records in rows.items():
        table_index = state.index(table)
        assert table_index <= machine.last_index
        for record in records:
            assert 1 <= record.create_index <= record.modify_index <= table_index, (table, record)


def restored_copy(machine: StateMachine) -> StateMachine:
    copy = StateMachine()
    copy.restore_data(decode_frame(encode_frame(machine.snapshot_data())))
    return copy


# ---- properties -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(log=logs(), cut=st.integers(0, 10))
def test_restored_replica_continues_identically(log, cut):
    cut = min(cut, len(log))
    original = StateMachine()
    for index, payload in log[:cut]:
        original.apply(index, payload)
    replica = restored_copy(original)
    assert replica.snapshot_data() == original.snapshot_data()
    assert every_read(replica) == every_read(original)

    # the journal may re-deliver entries the snapshot already holds: they must change nothing
    for index, payload in log[:cut]:
        assert all(r == Result(ok=True, value=None) for r in replica.apply(index, payload))
    assert replica.snapshot_data() == original.snapshot_data()

    for index, payload in log[cut:]:
        assert replica.apply(index, payload) == original.apply(index, payload)
    assert replica.snapshot_data() == original.snapshot_data()
    assert every_read(replica) == every_read(original)
    assert_index_invariants(original)


@settings(max_examples=100, deadline=None)
@given(log=logs())
def test_replaying_applied_entries_is_a_no_op(log):
    machine = StateMachine()
    first_results = [machine.apply(index, payload) for index, payload in log]
    before = machine.snapshot_data()
    notified = []
    machine.subscribe(lambda tables, index: notified.append(index))
    for (index, payload), results in zip(log, first_results, strict=True):
        assert machine.apply(index, payload) == [Result(ok=True, value=None)] * len(results)
    assert machine.snapshot_data() == before
    assert notified == []


@settings(max_examples=100, deadline=None)
@given(log=logs())
def test_table_indexes_never_go_backwards(log):
    machine = StateMachine()
    previous = dict.fromkeys(TABLES, 0)
    for index, payload in log:
        machine.apply(index, payload)
        current = {table: machine.state.index(table) for table in TABLES}
        assert all(current[t] >= previous[t] for t in TABLES)
        assert all(current[t] in (previous[t], index) for t in TABLES)  # moved only to this entry
        previous = current
    assert_index_invariants(machine)


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=300))
def test_apply_of_junk_never_raises_and_changes_nothing(junk):
    machine = StateMachine()
    machine.apply(1, encode_batch([("", FederationStateUpsert(FederationState("dc1")))]))
    before = machine.snapshot_data()["tables"]
    results = machine.apply(2, junk)
    assert isinstance(results, list) and results
    assert all(isinstance(r, Result) for r in results)
    if not all(r.ok for r in results):  # junk that happens to be a valid empty batch is fine
        assert machine.snapshot_data()["tables"] == before


@settings(max_examples=200, deadline=None)
@given(
    tag=st.sampled_from(["cat.reg/1", "cat.dereg/1", "chk.upd/1", "fed.set/1", "fed.del/1", "srv.reg/1"]),
    body=st.dictionaries(
        st.sampled_from(["node", "service", "checks", "check_id", "status", "state", "server", "datacenter"]),
        st.recursive(
            st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=4),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["node", "address", "id", "service", "port"]), inner, max_size=3
                )
            ),
            max_leaves=12,
        ),
        max_size=4,
    ),
)
def test_apply_of_near_miss_entries_never_raises(tag, body):
    machine = StateMachine()
    results = machine.apply(1, msgpack.packb([[tag, "r", body]], use_bin_type=True))
    assert len(results) == 1 and isinstance(results[0], Result)
    assert machine.last_index == 1


# ---- frame ------------------------------------------------------------------------------------


def sample_data() -> dict:
    machine = StateMachine()
    machine.apply(
        3,
        encode_batch(
            [
                ("r1", CatalogRegister(Node("n1", "10.0.0.1"), NodeService("web", "web", port=80))),
                ("", FederationStateUpsert(FederationState("dc2"))),
            ]
        ),
    )
    return machine.snapshot_data()


def test_frame_round_trip():
    data = sample_data()
    blob = encode_frame(data)
    assert blob[:4] == b"MFSN"
    assert decode_frame(blob) == data


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (lambda b: b"", "truncated"),
        (lambda b: b[:2], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:-40], "truncated"),
        (lambda b: b + b"\x00", "unexpected bytes"),
        (lambda b: b[:4] + (SNAPSHOT_VERSION + 1).to_bytes(2, "big") + b[6:], "unknown snapshot version"),
        (lambda b: b[:20] + bytes([b[20] ^ 0x01]) + b[21:], "checksum mismatch"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0x80]), "checksum mismatch"),
    ],
)
def test_decode_frame_names_what_is_wrong(mangle, message):
    with pytest.raises(SnapshotError, match=message):
        decode_frame(mangle(encode_frame(sample_data())))


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_flipped_byte_is_detected(position, flip):
    blob = bytearray(encode_frame(sample_data()))
    blob[position % len(blob)] ^= flip
    with pytest.raises(SnapshotError):
        decode_frame(bytes(blob))


def test_encode_frame_rejects_unserialisable_data():
    with pytest.raises(SnapshotError):
        encode_frame({"x": object()})


# ---- restore ----------------------------------------------------------------------------------


def test_restore_notifies_every_table_and_sets_last_index():
    data = sample_data()
    machine = StateMachine()
    notified = []
    machine.subscribe(lambda tables, index: notified.append((tables, index)))
    machine.restore_data(data)
    assert notified == [(frozenset(TABLES), 3)]
    assert machine.last_index == 3
    assert machine.state.catalog_node("n1")[1].create_index == 3
    # the dedupe window came along: a retry of r1 is answered, not applied
    assert machine.apply(4, encode_batch([("r1", CatalogDeregister("n1"))])) == [Result(ok=True)]
    assert machine.state.catalog_node("n1")[1] is not None


def test_restore_raises_table_index_to_the_rows():
    """reference/federation.md §2.6: the table index is at least the row's ModifyIndex."""
    data = sample_data()
    data["tables"]["table_index"]["federation_states"] = 0
    machine = StateMachine()
    machine.restore_data(data)
    assert machine.state.federation_state_get("dc2")[0] == 3


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.pop("tables"),
        lambda d: d.update(last_index=-1),
        lambda d: d.update(last_index="7"),
        lambda d: d.update(dedupe=[["r", [True]]]),
        lambda d: d["tables"]["nodes"].clear(),  # leaves an orphan service behind
        lambda d: d["tables"]["services"][0][1].update(port="80"),
        lambda d: d["tables"]["federation_states"].append({"no": "datacenter"}),
        lambda d: d["tables"]["table_index"].update(nodes=-3),
        lambda d: d["tables"].update(servers={}),
    ],
)
def test_restore_of_malformed_data_raises_and_keeps_state(mangle):
    machine = StateMachine()
    machine.apply(1, encode_batch([("", FederationStateUpsert(FederationState("keep-me")))]))
    before = machine.snapshot_data()
    data = sample_data()
    mangle(data)
    with pytest.raises(SnapshotError):
        machine.restore_data(data)
    assert machine.snapshot_data() == before

"""Config entries and CA state in the store: Consul's CAS rules (connect-data §B.2) and snapshots."""

from __future__ import annotations

from meshfed.fsm import (
    CAStateSet,
    ConfigEntryDelete,
    ConfigEntrySet,
    StateMachine,
    decode_frame,
    encode_batch,
    encode_frame,
)
from meshfed.fsm.records import CAState, ConfigEntry

WEB = ConfigEntry("service-defaults", "Web", {"Kind": "service-defaults", "Name": "Web", "Protocol": "http"}, hash=7)


def apply(machine: StateMachine, index: int, *commands: object) -> list[object]:
    return [r.value if r.ok else r for r in machine.apply(index, encode_batch([("", c) for c in commands]))]


def test_upsert_keeps_create_index_and_lookups_ignore_case() -> None:
    m = StateMachine()
    assert apply(m, 5, ConfigEntrySet(WEB)) == [True]
    assert apply(m, 8, ConfigEntrySet(WEB)) == [True]
    index, entry = m.state.config_entry_get("SERVICE-DEFAULTS", "web")
    assert index == 8 and entry is not None
    assert (entry.create_index, entry.modify_index, entry.body["Protocol"]) == (5, 8, "http")


def test_cas_zero_creates_only_and_cas_n_needs_the_current_modify_index() -> None:
    m = StateMachine()
    assert apply(m, 3, ConfigEntrySet(WEB, cas=0)) == [True]
    assert apply(m, 4, ConfigEntrySet(WEB, cas=0)) == [False]
    assert apply(m, 5, ConfigEntrySet(WEB, cas=2)) == [False]
    assert m.state.config_entry_get("service-defaults", "web")[0] == 3  # rejected writes moved nothing
    assert apply(m, 6, ConfigEntrySet(WEB, cas=3)) == [True]
    assert apply(m, 7, ConfigEntrySet(ConfigEntry("mesh", "mesh", {}), cas=9)) == [False]


def test_delete_semantics() -> None:
    m = StateMachine()
    assert apply(m, 2, ConfigEntryDelete("service-defaults", "nope")) == [True]
    assert m.state.config_entry_get("service-defaults", "nope")[0] == 0  # no bump for a missing entry
    apply(m, 3, ConfigEntrySet(WEB))
    assert apply(m, 4, ConfigEntryDelete("service-defaults", "web", cas=0)) == [False]
    assert apply(m, 5, ConfigEntryDelete("service-defaults", "web", cas=3)) == [True]
    assert m.state.config_entry_list()[1] == []


def test_list_is_sorted_by_kind_then_name() -> None:
    m = StateMachine()
    apply(m, 2, ConfigEntrySet(ConfigEntry("service-defaults", "b")), ConfigEntrySet(ConfigEntry("proxy-defaults", "global")),
          ConfigEntrySet(ConfigEntry("service-defaults", "A")))
    assert [(e.kind, e.name) for e in m.state.config_entry_list()[1]] == [
        ("proxy-defaults", "global"), ("service-defaults", "A"), ("service-defaults", "b")]
    assert [e.name for e in m.state.config_entry_list("service-defaults")[1]] == ["A", "b"]


def test_ca_state_cas_and_exactly_one_active_root() -> None:
    m = StateMachine()
    roots = ({"ID": "a", "Active": True},)
    assert apply(m, 2, CAStateSet(CAState("cid", {"Provider": "consul"}, roots), cas=1)) == [False]
    assert apply(m, 3, CAStateSet(CAState("cid", {"Provider": "consul"}, roots), cas=0)) == [True]
    bad = apply(m, 4, CAStateSet(CAState("cid", {}, ({"ID": "a", "Active": True}, {"ID": "b", "Active": True})), cas=3))
    assert "exactly one active" in bad[0].error  # type: ignore[union-attr]
    assert apply(m, 5, CAStateSet(CAState("cid", {}, ({"ID": "b", "Active": True},)), cas=0)) == [False]
    index, state = m.state.ca_state()
    assert index == 3 and state is not None and state.roots[0]["ID"] == "a"


def test_snapshot_round_trip_includes_config_entries_and_ca() -> None:
    m = StateMachine()
    apply(m, 2, ConfigEntrySet(WEB), CAStateSet(CAState("cid", {"Provider": "consul"}, ({"ID": "a", "Active": True},))))
    restored = StateMachine()
    restored.restore_data(decode_frame(encode_frame(m.snapshot_data())))
    assert restored.snapshot_data() == m.snapshot_data()
    assert restored.state.config_entry_get("service-defaults", "web")[1] == m.state.config_entry_get("service-defaults", "web")[1]
    assert restored.state.ca_state() == m.state.ca_state()

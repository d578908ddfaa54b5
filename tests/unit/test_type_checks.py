"""`check_type` asks a compiled predicate first and walks the value only to name a bad field. The
two must agree exactly: a predicate that accepted what the walk refuses would let a wrongly typed
log entry into the store. Every field of the records a command carries is given values of every
wrong kind, and each one must be refused by both, naming that field."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from meshfed.fsm.commands import CatalogRegister, FederationStateUpsert
from meshfed.fsm.records import (
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServiceAddress,
    Weights,
)
from meshfed.fsm.type_checks import CommandError, _walk, accepts, check_type

GATEWAY = CheckServiceNode(
    node=Node(node="gw", address="127.0.0.1", meta={"k": "v"}),
    service=NodeService(id="mesh-gateway", service="mesh-gateway", port=8443, tags=("a",), meta={"m": "1"},
                        tagged_addresses={"wan": ServiceAddress(address="127.0.0.2", port=8443)},
                        weights=Weights(passing=1, warning=1)),
    checks=(HealthCheck(node="gw", check_id="c", name="c", service_tags=("a",)),),
)
GOOD: list[Any] = [
    CatalogRegister(node=GATEWAY.node, service=GATEWAY.service, checks=GATEWAY.checks),
    FederationStateUpsert(FederationState(datacenter="dc2", mesh_gateways=(GATEWAY,), updated_at="2026-12-03T00:00:00Z")),
]
WRONG_VALUES: list[Any] = [None, 1, -1, 2**64, True, 1.5, float("nan"), "x", b"x", (), ("x",), (1,), {}, {"k": 1},
                           {1: "v"}, [], object()]


def mutations(record: Any, path: str = "") -> list[tuple[str, Any]]:
    """(field path, record with that one field replaced) for every field and wrong value, nested."""
    out: list[tuple[str, Any]] = []
    for name in typing.get_type_hints(type(record)):
        value = getattr(record, name)
        for wrong in WRONG_VALUES:
            out.append((f"{path}.{name}", dataclasses.replace(record, **{name: wrong})))
        if dataclasses.is_dataclass(value):
            out += [(p, dataclasses.replace(record, **{name: inner})) for p, inner in mutations(value, f"{path}.{name}")]
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            out += [(p, dataclasses.replace(record, **{name: (inner, *value[1:])}))
                    for p, inner in mutations(value[0], f"{path}.{name}[0]")]
    return out


@pytest.mark.parametrize("record", GOOD, ids=lambda r: type(r).__name__)
def test_well_typed_records_pass_both(record: Any) -> None:
    assert accepts(type(record))(record)
    _walk(record, type(record), "")
    check_type(record, type(record), "")


@pytest.mark.parametrize("record", GOOD, ids=lambda r: type(r).__name__)
def test_the_predicate_and_the_walk_agree_on_every_wrong_field(record: Any) -> None:
    cases = mutations(record)
    assert len(cases) > 300
    for path, mutated in cases:
        try:
            _walk(mutated, type(mutated), "")
            walk_accepts = True
        except CommandError:
            walk_accepts = False
        assert accepts(type(mutated))(mutated) == walk_accepts, path
        if not walk_accepts:
            with pytest.raises(CommandError):
                check_type(mutated, type(mutated), "")


def test_a_bad_field_is_named_as_clients_know_it() -> None:
    service = dataclasses.replace(GATEWAY.service, port="8443")  # type: ignore[arg-type]
    with pytest.raises(CommandError) as bad:
        check_type(CatalogRegister(node=GATEWAY.node, service=service), CatalogRegister, "")
    assert bad.value.field == "Service.Port"

"""Gateway locator decisions, table-driven (reference/federation.md §7.4-7.5, operators.md #7339)."""

from __future__ import annotations

import pytest

from meshfed.fsm.records import (
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServiceAddress,
)
from meshfed.server.wan.gateway_locator import (
    FAILURES_BEFORE_DIALING_PRIMARY_DIRECTLY,
    MODE_DIRECT,
    MODE_LOCAL,
    MODE_PRIMARY,
    ReplicationSignal,
    candidates,
    dial_primary_through_local,
    eligible_addresses,
)


def gateway(name: str, lan: str, wan: str, *, wanfed: bool = True, status: str = "passing") -> CheckServiceNode:
    return CheckServiceNode(
        node=Node(node=name, address=lan),
        service=NodeService(
            id="mesh-gateway", service="mesh-gateway", kind="mesh-gateway", address=lan, port=8443,
            tagged_addresses={"wan": ServiceAddress(wan, 443)},
            meta={"consul-wan-federation": "1"} if wanfed else {},
        ),
        checks=(HealthCheck(node=name, check_id="c", status=status),),
    )


def test_eligible_gateways_need_the_wanfed_meta_and_no_critical_check() -> None:
    state = FederationState("dc1", (
        gateway("a", "10.0.0.1", "198.51.100.1"),
        gateway("b", "10.0.0.2", "198.51.100.2", wanfed=False),
        gateway("c", "10.0.0.3", "198.51.100.3", status="critical"),
        gateway("d", "10.0.0.4", "198.51.100.4", status="warning"),
    ))
    assert eligible_addresses(state, wan=True) == ["198.51.100.1:443", "198.51.100.4:443"]
    assert eligible_addresses(state, wan=False) == ["10.0.0.1:8443", "10.0.0.4:8443"]
    assert eligible_addresses(None, wan=True) == []


@pytest.mark.parametrize(
    ("signal", "is_primary", "expected"),
    [
        (ReplicationSignal(), True, False),  # the primary never dials "through local" to itself
        (ReplicationSignal(use_replication_signal=False, consecutive_failures=9, last_failure=5), False, True),
        (ReplicationSignal(True, 0.0, 0.0, 0), False, False),
        (ReplicationSignal(True, 10.0, 5.0, 0), False, True),
        (ReplicationSignal(True, 5.0, 10.0, FAILURES_BEFORE_DIALING_PRIMARY_DIRECTLY - 1), False, True),
        (ReplicationSignal(True, 5.0, 10.0, FAILURES_BEFORE_DIALING_PRIMARY_DIRECTLY), False, False),
        (ReplicationSignal(True, 5.0, 10.0, 10), False, False),
    ],
)
def test_dial_primary_through_local_gateway(signal: ReplicationSignal, is_primary: bool, expected: bool) -> None:
    assert dial_primary_through_local(signal, is_primary) is expected


LOCAL = ["10.2.0.1:8443"]
PRIMARY = ["198.51.100.1:443", "198.51.100.2:443"]
FALLBACK = ["198.51.100.2:443", "203.0.113.9:443"]


@pytest.mark.parametrize(
    ("case", "target", "is_primary", "populated", "local", "through_local", "disabled", "mode", "expected"),
    [
        ("primary dials itself", "dc1", True, True, LOCAL, True, False, MODE_PRIMARY, PRIMARY),
        ("other DC from primary", "dc2", True, True, LOCAL, True, False, MODE_LOCAL, LOCAL),
        ("other DC from secondary", "dc3", False, True, LOCAL, False, False, MODE_LOCAL, LOCAL),
        ("healthy secondary", "dc1", False, True, LOCAL, True, False, MODE_LOCAL, LOCAL),
        ("replication failing", "dc1", False, True, LOCAL, False, False, MODE_DIRECT,
         sorted(set(PRIMARY) | set(FALLBACK))),
        ("no local gateway yet", "dc1", False, True, [], True, False, MODE_DIRECT, sorted(set(PRIMARY) | set(FALLBACK))),
        ("not populated", "dc1", False, False, LOCAL, True, False, MODE_DIRECT, sorted(set(PRIMARY) | set(FALLBACK))),
        ("fallback disabled", "dc1", False, True, LOCAL, False, True, MODE_DIRECT, PRIMARY),
        ("case-insensitive DC", "DC1", False, True, LOCAL, True, False, MODE_LOCAL, LOCAL),
    ],
)
def test_candidates(case: str, target: str, is_primary: bool, populated: bool, local: list[str],
                    through_local: bool, disabled: bool, mode: str, expected: list[str]) -> None:
    got_mode, addresses = candidates(
        target, primary_dc="dc1", is_primary=is_primary, populated=populated, local_gateways=local,
        primary_gateways=PRIMARY, fallback_gateways=FALLBACK, through_local=through_local, fallback_disabled=disabled,
    )
    assert (got_mode, addresses) == (mode, expected), case


def test_union_never_duplicates_an_address() -> None:
    _, addresses = candidates("dc1", primary_dc="dc1", is_primary=False, populated=True, local_gateways=[],
                              primary_gateways=PRIMARY, fallback_gateways=FALLBACK, through_local=False)
    assert len(addresses) == len(set(addresses)) == 3

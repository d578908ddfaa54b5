"""Two rounds of each fault scenario of tests/faults (the long runs live outside the suite):
no acknowledged write lost, replicas identical, and clients served again within the bounds the
issues state."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.scenarios import SCENARIOS, SNAPSHOT_OFTEN

# Worst first-write wait after the fault that a client may see (whole-cluster counts from restart).
RECOVERY_BOUND_S = {"leader-kill": 2.0, "follower-kill": 2.0, "whole-cluster-kill": 15.0, "leader-pause": 3.0}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fault_loses_no_acknowledged_write(make_dc: Any, scenario: str) -> None:
    dc = make_dc("dc1", config=SNAPSHOT_OFTEN)
    result = SCENARIOS[scenario](dc, rounds=2)
    assert result["acknowledged"] > 50, result
    assert result["diverged"] == 0, result
    assert result["recover_max_s"] < RECOVERY_BOUND_S[scenario], result
    assert result["lost"] == 0, result

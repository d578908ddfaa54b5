"""The collector settings of a server process (server/gc_tuning.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from meshfed.server import gc_tuning


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.callbacks[:] = [cb for cb in gc.callbacks if not isinstance(cb, gc_tuning.GCPauses)]
        gc.set_threshold(*before)


def test_tune_raises_the_thresholds_and_times_every_collection(restored: None) -> None:
    registry = CollectorRegistry()
    gc_tuning.tune(registry)
    assert gc.get_threshold() == (gc_tuning.GEN0_THRESHOLD, gc_tuning.GEN1_THRESHOLD, gc_tuning.GEN2_THRESHOLD)
    gc.collect(2)
    assert registry.get_sample_value("meshfed_gc_pause_seconds_count", {"generation": "2"}) == 1.0

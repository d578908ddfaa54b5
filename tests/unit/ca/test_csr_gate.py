"""The leader's CSR gate: a rate with a one-second burst, or a concurrency cap instead."""

from __future__ import annotations

from meshfed.server.ca.csr_gate import CSRGate


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_allows_a_burst_of_one_second_then_refills() -> None:
    clock = Clock()
    gate = CSRGate(clock)
    granted = sum(gate.try_acquire(5, 0) for _ in range(8))
    assert granted == 5
    clock.now += 0.2  # one more token at 5/s
    assert gate.try_acquire(5, 0) and not gate.try_acquire(5, 0)


def test_concurrency_cap_replaces_the_rate() -> None:
    gate = CSRGate(Clock())
    assert gate.try_acquire(0.001, 2) and gate.try_acquire(0.001, 2)
    assert not gate.try_acquire(0.001, 2)
    gate.release()
    assert gate.try_acquire(0.001, 2)


def test_zero_means_unlimited() -> None:
    gate = CSRGate(Clock())
    assert all(gate.try_acquire(0, 0) for _ in range(1000))

"""The dialer's bound on a stream's first message (server/peering/dialing.py)."""

from __future__ import annotations

from meshfed.server.peering.dialing import FIRST_MESSAGE_TIMEOUT, first_message_bound


def test_a_first_attempt_waits_the_short_bound_and_each_failure_in_a_row_doubles_it() -> None:
    # One wedged address costs 5 s before the next address is tried ...
    assert first_message_bound(0, 120.0) == FIRST_MESSAGE_TIMEOUT
    # ... but a peer that is only slow (an overloaded leader) is not cut off at every attempt:
    # the wait doubles while attempts keep failing, up to the stream's own silence timeout.
    assert [first_message_bound(n, 120.0) for n in range(1, 7)] == [10.0, 20.0, 40.0, 80.0, 120.0, 120.0]
    assert first_message_bound(50, 120.0) == 120.0
    # A stream timeout shorter than the bound is the bound.
    assert first_message_bound(0, 2.0) == 2.0

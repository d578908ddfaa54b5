"""Waiters: one future per caller and key, resolved together, each caller leaving on its own."""

from __future__ import annotations

import asyncio

from meshfed.server.requests.waiters import Waiters


def test_resolving_a_key_resolves_every_future_on_it_and_only_those() -> None:
    async def scenario() -> None:
        waiters: Waiters[str, int] = Waiters()
        both = waiters.add(("a", "b"))
        only_b = waiters.add(("b",))
        assert waiters.count() == 3 and sorted(waiters.keys()) == ["a", "b"]
        waiters.resolve("a", 7)
        assert both.result() == 7 and not only_b.done()
        waiters.discard(both, ("a", "b"))
        assert waiters.count() == 1
        later = waiters.add(("a",))  # waits for the next resolve, not the last one
        assert not later.done()
        waiters.resolve("b", 8)
        assert only_b.result() == 8
        waiters.discard(only_b, ("b",))
        waiters.discard(later, ("a",))
        assert not waiters and waiters.count() == 0

    asyncio.run(scenario())

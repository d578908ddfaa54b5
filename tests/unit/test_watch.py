"""WatchHub: the one-future-per-table wake-up that blocking queries and anti-entropy sleep on.

The property that matters is "no lost wake-up": a waiter that took its future before running its
query must be woken by any change applied after that, even one that lands before it starts to wait.
"""

from __future__ import annotations

import asyncio
import time

from meshfed.server.requests.watch import WatchHub


def test_waiter_that_took_its_future_before_a_notify_is_woken_even_if_it_waits_later() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        futures = hub.futures(["nodes"])
        hub.notify(["nodes"], 7)  # the change lands between the query and the wait
        started = time.monotonic()
        await hub.wait_any(futures, timeout=5)
        assert time.monotonic() - started < 1
        assert futures[0].result() == 7

    asyncio.run(scenario())


def test_many_waiters_share_one_future_and_all_wake() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        first, second = hub.future("services"), hub.future("services")
        assert first is second
        waiters = [asyncio.create_task(hub.wait_any([hub.future("services")], 5)) for _ in range(100)]
        await asyncio.sleep(0)
        hub.notify(["services"], 3)
        await asyncio.wait_for(asyncio.gather(*waiters), 1)

    asyncio.run(scenario())


def test_after_a_notify_the_table_gets_a_fresh_future() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        old = hub.future("checks")
        hub.notify(["checks"], 1)
        new = hub.future("checks")
        assert old.done() and not new.done()
        assert new is not old
        hub.notify(["checks"], 2)
        assert new.result() == 2 and old.result() == 1

    asyncio.run(scenario())


def test_notify_of_other_tables_does_not_wake() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        futures = hub.futures(["federation_states"])
        hub.notify(["nodes", "servers"], 9)
        started = time.monotonic()
        await hub.wait_any(futures, timeout=0.1)
        assert time.monotonic() - started >= 0.09
        assert not futures[0].done()

    asyncio.run(scenario())


def test_wait_any_returns_on_the_first_of_several_tables() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        futures = hub.futures(["nodes", "services", "checks"])
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, hub.notify, ["checks"], 4)
        started = time.monotonic()
        await hub.wait_any(futures, timeout=5)
        assert time.monotonic() - started < 1
        assert [f.done() for f in futures] == [False, False, True]

    asyncio.run(scenario())


def test_wait_any_times_out_without_raising() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        started = time.monotonic()
        await hub.wait_any(hub.futures(["nodes"]), timeout=0.05)
        assert 0.04 <= time.monotonic() - started < 1

    asyncio.run(scenario())


def test_notify_all_wakes_every_table_after_a_restore() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        futures = hub.futures(["nodes", "services", "federation_states"])
        hub.notify_all(42)
        assert [f.result() for f in futures] == [42, 42, 42]
        assert not hub.future("nodes").done()

    asyncio.run(scenario())


def test_a_cancelled_waiter_does_not_break_the_shared_future() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        quitter = asyncio.create_task(hub.wait_any(hub.futures(["nodes"]), 5))
        stayer = asyncio.create_task(hub.wait_any(hub.futures(["nodes"]), 5))
        await asyncio.sleep(0)
        quitter.cancel()
        await asyncio.sleep(0)
        hub.notify(["nodes"], 5)
        await asyncio.wait_for(stayer, 1)

    asyncio.run(scenario())


# ---- tickets: one future per blocking query -------------------------------------------------------


def test_a_ticket_taken_before_a_notify_is_resolved_even_if_the_wait_starts_later() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        ticket = hub.ticket(("nodes", "services"))
        hub.notify(["services"], 4)  # lands between the query and the wait
        started = time.monotonic()
        await hub.wait_ticket(ticket, timeout=5)
        assert time.monotonic() - started < 1 and ticket.result() == 4
        hub.release(ticket, ("nodes", "services"))
        assert hub.waiting() == 0

    asyncio.run(scenario())


def test_ticket_wait_times_out_and_other_tables_do_not_wake_it() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        ticket = hub.ticket(("nodes",))
        hub.notify(["checks"], 2)
        started = time.monotonic()
        await hub.wait_ticket(ticket, timeout=0.1)
        assert 0.09 <= time.monotonic() - started < 1
        hub.release(ticket, ("nodes",))
        assert hub.waiting() == 0

    asyncio.run(scenario())


def test_cancelling_one_ticket_waiter_leaves_the_others_waiting_and_woken() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        tickets = [hub.ticket(("services",)) for _ in range(3)]
        tasks = [asyncio.create_task(hub.wait_ticket(t, 5)) for t in tickets]
        await asyncio.sleep(0)
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        hub.release(tickets[0], ("services",))
        hub.notify(["services"], 9)
        await asyncio.wait_for(asyncio.gather(*tasks[1:]), 1)
        assert [t.result() for t in tickets[1:]] == [9, 9]

    asyncio.run(scenario())


def test_notify_all_resolves_tickets_too() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        ticket = hub.ticket(("acl_tokens",))
        future = hub.future("nodes")
        hub.notify_all(0)
        assert ticket.done() and future.done()

    asyncio.run(scenario())

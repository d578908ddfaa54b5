"""Group commit in the Raft adapter (server/raft/node.py): concurrent proposals share log entries,
each command keeps its own result, and a batch stays under MAX_BATCH_BYTES.

The splitting rule is checked on a bare instance (no PySyncObj needed); the end-to-end behaviour on
a real single-node RaftNode on loopback, as tests/unit/test_raft_storage.py does.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from meshfed.fsm import (
    CatalogRegister,
    CheckUpdate,
    Command,
    Noop,
    StateMachine,
    encode_batch,
    encode_entry,
    join_entries,
)
from meshfed.fsm.records import Node
from meshfed.server.raft import RaftNode, RaftTimings
from meshfed.server.raft.node import MAX_BATCH_BYTES, MAX_BATCH_COMMANDS

KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU="


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def big_register(name: str, size: int) -> CatalogRegister:
    return CatalogRegister(node=Node(node=name, address="127.0.0.1", meta={"pad": "x" * size}))


# ---- the splitting rule, without PySyncObj -----------------------------------------------------------


def bare_node(commands: list[tuple[str, Command]]) -> RaftNode:
    node = RaftNode.__new__(RaftNode)  # only _pending is used by _take_batch
    node._pending = [(rid, encode_entry(rid, cmd), None) for rid, cmd in commands]  # type: ignore[misc]
    return node


def drain(node: RaftNode) -> list[list[str]]:
    batches = []
    while node._pending:
        batches.append([rid for rid, _, _ in node._take_batch()])
    return batches


def test_take_batch_caps_the_command_count_and_keeps_order() -> None:
    commands = [(f"r{i}", Noop()) for i in range(MAX_BATCH_COMMANDS + 44)]
    batches = drain(bare_node(commands))
    assert [len(b) for b in batches] == [MAX_BATCH_COMMANDS, 44]
    assert [rid for batch in batches for rid in batch] == [rid for rid, _ in commands]


@pytest.mark.parametrize("size, count", [(20_000, 10), (5_000, 40), (30_000, 3), (1_000, 300)])
def test_take_batch_keeps_each_batch_under_the_byte_limit(size: int, count: int) -> None:
    commands = [(f"r{i}", big_register(f"n{i}", size)) for i in range(count)]
    by_id = dict(commands)
    node = bare_node(commands)
    seen = []
    while node._pending:
        batch = node._take_batch()
        assert batch
        payload = join_entries([item for _, item, _ in batch])
        assert payload == encode_batch([(rid, by_id[rid]) for rid, _, _ in batch])
        assert len(payload) <= MAX_BATCH_BYTES or len(batch) == 1
        seen.extend(rid for rid, _, _ in batch)
    assert seen == [rid for rid, _ in commands]


def test_an_oversized_command_goes_alone_instead_of_looping() -> None:
    commands = [("big", big_register("big", MAX_BATCH_BYTES * 2)), ("small", Noop())]
    assert drain(bare_node(commands)) == [["big"], ["small"]]


# ---- a real single-node RaftNode -----------------------------------------------------------------------


async def with_node(action: Any, batches: list[int]) -> Any:
    machine = StateMachine()
    node = RaftNode(
        self_address=f"127.0.0.1:{free_port()}", peers=[], machine=machine, cluster_key=KEY, data_dir=None,
        timings=RaftTimings(), on_batch=lambda count, seconds: batches.append(count),
    )
    node.start(asyncio.get_running_loop())
    try:
        for _ in range(200):
            if node.is_leader():
                break
            await asyncio.sleep(0.02)
        assert node.is_leader()
        await node.barrier()
        batches.clear()
        return await action(node, machine)
    finally:
        await asyncio.get_running_loop().run_in_executor(None, node.stop)


def command_for(i: int) -> tuple[str, Command]:
    kind = i % 3
    if kind == 0:
        return f"reg-{i}", CatalogRegister(node=Node(node=f"n{i}", address="127.0.0.1"))
    if kind == 1:
        return f"upd-{i}", CheckUpdate(node=f"ghost{i}", check_id="c", status="passing", at=1.0)
    return "", Noop()


def test_500_concurrent_applies_complete_with_their_own_results_in_few_entries() -> None:
    batches: list[int] = []

    async def action(node: RaftNode, machine: StateMachine) -> None:
        count = 500
        results = await asyncio.wait_for(
            asyncio.gather(*(node.apply([command_for(i)]) for i in range(count))), 15
        )
        assert all(len(r) == 1 for r in results)
        noop_indexes = set()
        for i, (result,) in enumerate(results):
            kind = i % 3
            if kind == 0:
                assert result.ok, result
            elif kind == 1:
                assert not result.ok and f"ghost{i}'" in result.error, (i, result)
            else:
                assert result.ok and isinstance(result.value, int) and result.value > 0
                noop_indexes.add(result.value)
        assert sum(batches) == count
        assert len(batches) <= count // 5, f"{len(batches)} log entries for {count} commands"
        # the entry index a Noop reports is shared by everything in its batch
        assert len(noop_indexes) <= len(batches)
        names = {n.node for n in machine.state.catalog_nodes()[1]}
        assert names == {f"n{i}" for i in range(0, count, 3)}

    asyncio.run(with_node(action, batches))


def test_one_apply_of_many_commands_keeps_order_and_results() -> None:
    batches: list[int] = []

    async def action(node: RaftNode, machine: StateMachine) -> None:
        commands = [command_for(i) for i in range(30)]
        results = await node.apply(commands)
        assert [r.ok for r in results] == [i % 3 != 1 for i in range(30)]
        assert batches == [30]

    asyncio.run(with_node(action, batches))


def test_big_commands_are_split_across_entries_and_all_apply() -> None:
    batches: list[int] = []

    async def action(node: RaftNode, machine: StateMachine) -> None:
        results = await asyncio.wait_for(
            asyncio.gather(*(node.apply([(f"b{i}", big_register(f"big{i}", 20_000))]) for i in range(12))), 15
        )
        assert all(r.ok for (r,) in results)
        assert sum(batches) == 12 and max(batches) <= 2
        assert {n.node for n in machine.state.catalog_nodes()[1]} == {f"big{i}" for i in range(12)}

    asyncio.run(with_node(action, batches))

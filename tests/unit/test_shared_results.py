"""SharedResults: one run of a read per store version for every identical query.

What must hold: a caller never gets a result computed at an older version than the one it saw,
and the memory kept is the current version's results only.
"""

from __future__ import annotations

from meshfed.server.requests.shared_results import SharedResults


class Store:
    def __init__(self) -> None:
        self.version = 0
        self.runs = 0

    def read(self) -> tuple[int, dict[str, int]]:
        self.runs += 1
        return self.version, {"v": self.version}


def test_one_run_per_version_and_the_same_object_for_every_caller() -> None:
    store = Store()
    shared = SharedResults(lambda: store.version)
    first = shared.run("k", store.read)
    assert all(shared.run("k", store.read) is first for _ in range(100))
    assert store.runs == 1 and shared.hits == 100
    store.version += 1
    second = shared.run("k", store.read)
    assert second is not first and second[0] == 1 and store.runs == 2


def test_different_keys_never_share() -> None:
    store = Store()
    shared = SharedResults(lambda: store.version)
    a = shared.run("a", store.read)
    b = shared.run("b", store.read)
    assert a is not b and store.runs == 2


def test_a_write_during_the_read_makes_the_entry_newer_than_its_version_never_older() -> None:
    store = Store()
    shared = SharedResults(lambda: store.version)

    def read_while_a_write_lands() -> tuple[int, dict[str, int]]:
        store.version += 1  # the Raft thread applied an entry between the version read and this read
        return store.read()

    result = shared.run("k", read_while_a_write_lands)
    assert result[0] == 1
    # the next caller sees version 1, the entry says 0: it runs again rather than trust it
    again = shared.run("k", store.read)
    assert again is not result and store.runs == 2


def test_only_the_current_versions_results_are_kept() -> None:
    store = Store()
    shared = SharedResults(lambda: store.version, max_keys=3)
    for key in "abc":
        shared.run(key, store.read)
    assert len(shared) == 3
    shared.run("d", store.read)  # over the bound at one version: the oldest goes
    assert len(shared) == 3
    store.version += 1
    shared.run("a", store.read)  # a new version drops every older entry
    assert len(shared) == 1

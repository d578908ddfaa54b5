"""Config-entry replication diff (connect-data §B.5; operators.md #9196, #9319)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshfed.fsm.config_entries import content_hash
from meshfed.replication.config_entries import body_of, diff_config_entries

kinds = st.sampled_from(["service-defaults", "proxy-defaults", "exported-services", "service-intentions"])


@st.composite
def entries(draw: st.DrawFn) -> list[dict[str, object]]:
    keys = draw(st.lists(st.tuples(kinds, st.sampled_from(["a", "b", "C", "global"])), unique_by=lambda k: (k[0], k[1].lower()),
                         max_size=6))
    return [{"Kind": k, "Name": n, "Protocol": draw(st.sampled_from(["http", "grpc"])),
             "CreateIndex": draw(st.integers(1, 9)), "ModifyIndex": draw(st.integers(1, 99))} for k, n in keys]


def apply(local: list[dict[str, object]], remote: list[dict[str, object]]) -> list[dict[str, object]]:
    diff = diff_config_entries(local, remote, content_hash)
    key = lambda e: (str(e["Kind"]).lower(), str(e["Name"]).lower())  # noqa: E731
    result = {key(e): e for e in local}
    for gone in diff.deletions:
        del result[key(gone)]
    for new in diff.updates:
        result[key(new)] = {**body_of(new), "CreateIndex": 100, "ModifyIndex": 100}  # local indexes differ
    return list(result.values())


@given(entries(), entries())
def test_converges_and_never_touches_exported_services(local: list[dict[str, object]], remote: list[dict[str, object]]) -> None:
    after = apply(local, remote)
    replicated = lambda es: {(str(e["Kind"]), str(e["Name"]).lower(), e["Protocol"]) for e in es  # noqa: E731
                             if e["Kind"] != "exported-services"}
    assert replicated(after) == replicated(remote)
    assert [e for e in after if e["Kind"] == "exported-services"] == [e for e in local if e["Kind"] == "exported-services"]
    second = diff_config_entries(after, remote, content_hash)
    assert second.deletions == [] and second.updates == []


@given(entries())
def test_an_election_rewrites_nothing_whatever_the_indexes(remote: list[dict[str, object]]) -> None:
    local = [{**e, "ModifyIndex": 1000, "CreateIndex": 1000} for e in remote]
    diff = diff_config_entries(local, remote, content_hash)
    assert diff.updates == [] and diff.deletions == []

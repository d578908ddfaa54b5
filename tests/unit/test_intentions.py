"""Intentions as views over service-intentions entries (reference/connect-data.md §A.2-A.6, §A.9)."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.fsm.config_entries import ConfigEntryError, normalize, validate
from meshfed.fsm.intentions import (
    IntentionErrors,
    check,
    delete_exact,
    find_by_id,
    find_exact,
    intention_hash,
    intention_views,
    legacy_create,
    legacy_delete,
    legacy_update,
    match,
    parse_service_ref,
    sort_key,
    upsert_exact,
)

NOW = "2024-05-21T16:41:27.977155457Z"
LATER = "2024-06-01T08:00:00Z"
ID_A = "e9ebc19f-d481-42b1-4871-4d298d3acd5c"
ID_B = "0b1d7f2e-6f6e-41f0-9d3e-8a9b2c1d0e4f"


def source(name: str, action: str | None = "allow", **fields: Any) -> dict[str, Any]:
    """A stored source; Precedence is deliberately wrong to prove it is recomputed on read."""
    result: dict[str, Any] = {"Name": name, "Type": "consul", "Precedence": 1}
    if action is not None:
        result["Action"] = action
    result.update(fields)
    return result


def legacy(name: str, legacy_id: str, action: str = "allow", meta: dict[str, str] | None = None) -> dict[str, Any]:
    return source(name, action, LegacyID=legacy_id, LegacyMeta=meta or {}, LegacyCreateTime=NOW,
                  LegacyUpdateTime=NOW)


def entry(name: str, *sources: dict[str, Any], create: int = 10, modify: int = 12, **fields: Any) -> dict[str, Any]:
    return {"Kind": "service-intentions", "Name": name, "Sources": list(sources), **fields,
            "CreateIndex": create, "ModifyIndex": modify}


def pairs(views: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    return [(view["SourceName"], view["DestinationName"]) for view in views or []]


# --------------------------------------------------------------------------------- precedence (§A.4)


@pytest.mark.parametrize(("source_name", "destination_name", "expected"), [
    ("web", "db", 9), ("*", "db", 8), ("web", "*", 6), ("*", "*", 5),
])
def test_precedence_table_in_ce(source_name: str, destination_name: str, expected: int) -> None:
    [view] = intention_views([entry(destination_name, source(source_name, Precedence=99))])
    assert view["Precedence"] == expected


def test_writes_recompute_precedence_and_sort_sources_stably() -> None:
    written = upsert_exact(entry("db", source("*", Precedence=9), source("api", Precedence=2)), "web", "db",
                           {"Action": "deny", "Precedence": 1})
    assert [(s["Name"], s["Precedence"]) for s in written["Sources"]] == [("api", 9), ("web", 9), ("*", 8)]


# --------------------------------------------------------------------------------- views (§A.2)


def test_new_style_view_shape_uses_entry_meta_and_indexes() -> None:
    [view] = intention_views([entry("db", source("web", "deny", Description="no"), Meta={"owner": "team-db"})])
    assert view == {
        "Description": "no", "SourceNS": "default", "SourceName": "web", "DestinationNS": "default",
        "DestinationName": "db", "SourceType": "consul", "Action": "deny", "Meta": {"owner": "team-db"},
        "Precedence": 9, "CreateIndex": 10, "ModifyIndex": 12,
    }


def test_new_style_view_omits_empty_fields() -> None:
    [view] = intention_views([entry("db", source("web", Description=""))])
    for absent in ("ID", "Description", "Meta", "CreatedAt", "UpdatedAt", "Hash", "SourcePeer", "Permissions"):
        assert absent not in view


def test_legacy_view_has_id_times_hash_and_its_own_meta() -> None:
    stored = entry("db", legacy("web", ID_A, meta={"team": "payments"}), Meta={"ignored": "x"})
    [view] = intention_views([stored])
    assert list(view) == ["ID", "SourceNS", "SourceName", "DestinationNS", "DestinationName", "SourceType",
                          "Action", "Meta", "Precedence", "CreatedAt", "UpdatedAt", "Hash", "CreateIndex",
                          "ModifyIndex"]
    assert view["ID"] == ID_A
    assert view["Meta"] == {"team": "payments"}
    assert view["CreatedAt"] == view["UpdatedAt"] == NOW
    assert len(base64.b64decode(view["Hash"])) == 32


def test_l7_view_has_permissions_and_no_action() -> None:
    permissions = [{"Action": "allow", "HTTP": {"PathPrefix": "/v1"}}]
    [view] = intention_views([entry("db", source("web", None, Permissions=permissions))])
    assert "Action" not in view
    assert view["Permissions"] == permissions


def test_peer_source_view_names_the_peer() -> None:
    [view] = intention_views([entry("db", source("api", Peer="cluster-02"))])
    assert view["SourcePeer"] == "cluster-02"


def test_every_intention_of_a_destination_carries_the_entry_indexes() -> None:
    views = intention_views([entry("db", source("web"), source("api"), create=3, modify=40)])
    assert {(v["CreateIndex"], v["ModifyIndex"]) for v in views} == {(3, 40)}


def test_views_skip_other_kinds() -> None:
    other = {"Kind": "service-defaults", "Name": "db", "Sources": [source("web")]}
    assert intention_views([other]) == []


# --------------------------------------------------------------------------------- ordering (§A.4)


def test_sort_order_precedence_then_names_with_peers_after_locals() -> None:
    entries = [
        entry("*", source("web"), source("*")),
        entry("db", source("web"), source("api", Peer="cluster-02"), source("*"), source("api")),
        entry("cache", source("web")),
    ]
    order = [(v["Precedence"], v.get("SourcePeer", ""), v["SourceName"], v["DestinationName"])
             for v in intention_views(entries)]
    assert order == [
        (9, "", "api", "db"), (9, "", "web", "cache"), (9, "", "web", "db"), (9, "cluster-02", "api", "db"),
        (8, "", "*", "db"), (6, "", "web", "*"), (5, "", "*", "*"),
    ]


def test_sort_key_breaks_ties_by_destination_last() -> None:
    first = {"Precedence": 9, "SourceNS": "default", "SourceName": "web", "DestinationNS": "default",
             "DestinationName": "a"}
    second = dict(first, DestinationName="b")
    assert sort_key(first) < sort_key(second)
    assert sort_key(dict(second, Precedence=10)) < sort_key(first)


# --------------------------------------------------------------------------------- match (§A.5, §A.6)


def example_entries() -> list[dict[str, Any]]:
    return [
        entry("db", source("web", "deny"), create=12, modify=12),
        entry("*", source("web", "allow"), create=11, modify=11),
    ]


def test_match_by_source_reproduces_the_reference_example() -> None:
    result = match(example_entries(), "source", ["web"])
    assert result == {"web": [
        {"SourceNS": "default", "SourceName": "web", "DestinationNS": "default", "DestinationName": "db",
         "SourceType": "consul", "Action": "deny", "Precedence": 9, "CreateIndex": 12, "ModifyIndex": 12},
        {"SourceNS": "default", "SourceName": "web", "DestinationNS": "default", "DestinationName": "*",
         "SourceType": "consul", "Action": "allow", "Precedence": 6, "CreateIndex": 11, "ModifyIndex": 11},
    ]}


def test_match_by_source_includes_wildcard_sources_and_never_peer_sources() -> None:
    entries = [entry("db", source("*"), source("web", Peer="cluster-02")), entry("api", source("web"))]
    assert pairs(match(entries, "source", ["web"])["web"]) == [("web", "api"), ("*", "db")]


def test_match_by_destination_includes_wildcard_entry_and_peer_sources() -> None:
    entries = [
        entry("db", source("web"), source("api", Peer="cluster-02")),
        entry("*", source("*")),
        entry("cache", source("web")),
    ]
    views = match(entries, "destination", ["db"])["db"]
    assert [(v["SourceName"], v.get("SourcePeer", ""), v["DestinationName"]) for v in views] == [
        ("web", "", "db"), ("api", "cluster-02", "db"), ("*", "", "*"),
    ]


def test_match_by_wildcard_destination_does_not_count_the_entry_twice() -> None:
    assert pairs(match([entry("*", source("web"))], "destination", ["*"])["*"]) == [("web", "*")]


def test_match_keys_names_as_given_and_maps_no_match_to_none() -> None:
    result = match(example_entries(), "source", ["default/web", "nobody"])
    assert list(result) == ["default/web", "nobody"]
    assert pairs(result["default/web"]) == [("web", "db"), ("web", "*")]
    assert result["nobody"] is None


def test_match_destination_lookup_is_case_insensitive() -> None:
    assert pairs(match([entry("db", source("web"))], "destination", ["DB"])["DB"]) == [("web", "db")]


@pytest.mark.parametrize(("by", "names", "field", "message"), [
    ("", ["web"], "by", "'by' parameter must be one of 'source' or 'destination'"),
    ("dest", ["web"], "by", "'by' parameter must be one of 'source' or 'destination'"),
    ("source", [], "name", "required query parameter 'name' not set"),
    ("source", ["peer:x/web"], "name", "cannot specify a peer here"),
])
def test_match_errors(by: str, names: list[str], field: str, message: str) -> None:
    with pytest.raises(ConfigEntryError) as caught:
        match([], by, names)
    assert (caught.value.field, caught.value.message) == (field, message)


# --------------------------------------------------------------------------------- check (§A.6)


def test_check_exact_deny_beats_wildcard_allow() -> None:
    assert check(example_entries(), "web", "db") is False
    assert check(example_entries(), "web", "cache") is True


def test_check_without_a_matching_intention_uses_the_default() -> None:
    entries = [entry("db", source("web", "deny"))]
    assert check(entries, "api", "db", default_allow=True) is True
    assert check(entries, "api", "db", default_allow=False) is False


def test_check_wildcard_source_applies_to_everyone() -> None:
    entries = [entry("db", source("*", "deny"))]
    assert check(entries, "anyone", "db", default_allow=True) is False
    assert check(entries, "anyone", "other", default_allow=False) is False


def test_check_exact_source_to_wildcard_beats_wildcard_source_to_exact_destination() -> None:
    # web -> * has precedence 6, * -> db has 8: the more specific destination wins.
    entries = [entry("*", source("web", "allow")), entry("db", source("*", "deny"))]
    assert check(entries, "web", "db") is False


def test_check_l7_intention_denies() -> None:
    entries = [entry("db", source("web", None, Permissions=[{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]))]
    assert check(entries, "web", "db", default_allow=True) is False


def test_check_ignores_peer_sources() -> None:
    entries = [entry("db", source("web", "deny", Peer="cluster-02"))]
    assert check(entries, "web", "db", default_allow=True) is True


def test_check_destination_is_case_insensitive() -> None:
    assert check([entry("db", source("web", "deny"))], "web", "DB") is False


def test_check_rejects_other_source_types_and_missing_parameters() -> None:
    with pytest.raises(ConfigEntryError, match="unsupported SourceType"):
        check([], "web", "db", source_type="external-uri")
    with pytest.raises(ConfigEntryError) as caught:
        check([], "", "db")
    assert str(caught.value) == "source: required query parameter 'source' not set"
    with pytest.raises(ConfigEntryError, match="required query parameter 'destination' not set"):
        check([], "web", "")


names = st.sampled_from(["web", "api", "db", "cache", "*"])
actions = st.sampled_from(["allow", "deny"])


@st.composite
def random_entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    destinations = draw(st.lists(names, unique=True, max_size=5))
    result = []
    for destination in destinations:
        sources = draw(st.lists(st.tuples(names, actions, st.booleans()), unique_by=lambda s: s[0], min_size=1,
                                max_size=4))
        result.append(entry(destination, *[
            source(name, action, **({"Peer": "p1"} if peered else {})) for name, action, peered in sources
        ]))
    return result


@settings(max_examples=150, deadline=None)
@given(random_entries(), st.sampled_from(["web", "api", "db"]), st.sampled_from(["web", "api", "db"]), actions,
       st.booleans())
def test_an_exact_intention_always_decides_check(entries: list[dict[str, Any]], src: str, dst: str, action: str,
                                                 default_allow: bool) -> None:
    """An exact source -> exact destination intention has the top precedence (9), so nothing overrides it."""
    decided = []
    for candidate in entries:
        if candidate["Name"] == dst:
            kept = [s for s in candidate["Sources"] if s["Name"] != src or s.get("Peer")]
            candidate = dict(candidate, Sources=kept)
        decided.append(candidate)
    if not any(candidate["Name"] == dst for candidate in decided):
        decided.append(entry(dst))
    target = next(candidate for candidate in decided if candidate["Name"] == dst)
    target["Sources"].append(source(src, action))
    assert check(decided, src, dst, default_allow) is (action == "allow")


@settings(max_examples=150, deadline=None)
@given(random_entries())
def test_listing_is_sorted_and_complete(entries: list[dict[str, Any]]) -> None:
    views = intention_views(entries)
    assert len(views) == sum(len(e["Sources"]) for e in entries)
    precedences = [v["Precedence"] for v in views]
    assert precedences == sorted(precedences, reverse=True)
    assert [sort_key(v) for v in views] == sorted(sort_key(v) for v in views)


# --------------------------------------------------------------------------------- parsing (§A.5)


@pytest.mark.parametrize(("text", "allow_peer", "expected"), [
    ("web", False, ("", "web")),
    ("*", False, ("", "*")),
    ("default/web", False, ("", "web")),
    ("default/default/web", False, ("", "web")),
    ("peer:cluster-02/web", True, ("cluster-02", "web")),
    ("peer:cluster-02/default/web", True, ("cluster-02", "web")),
])
def test_parse_service_ref_forms(text: str, allow_peer: bool, expected: tuple[str, str]) -> None:
    assert parse_service_ref(text, allow_peer=allow_peer) == expected


@pytest.mark.parametrize(("text", "allow_peer", "field", "message"), [
    ("", False, "source", "required query parameter 'source' not set"),
    ("a/b/c/d", False, "source", "input can contain at most two '/'"),
    ("peer:p/a/b/c", True, "source", "input can contain at most two '/'"),
    ("peer:cluster-02/web", False, "source", "cannot specify a peer here"),
    ("peer:cluster-02", True, "source", "need to specify the service name as well"),
    ("default/", False, "source", "need to specify the service name as well"),
    ("team/web", False, "source", "Invalid SourceNS(team): Namespaces is a Consul Enterprise feature"),
    ("team/web", False, "destination", "Invalid DestinationNS(team): Namespaces is a Consul Enterprise feature"),
    ("*/web", False, "source", "Invalid SourceNS(*): Namespaces is a Consul Enterprise feature"),
    ("part/default/web", False, "destination", "Cannot use a partition with this endpoint"),
])
def test_parse_service_ref_errors(text: str, allow_peer: bool, field: str, message: str) -> None:
    with pytest.raises(ConfigEntryError) as caught:
        parse_service_ref(text, allow_peer=allow_peer, field=field)
    assert (caught.value.field, caught.value.message) == (field, message)


def test_find_exact_accepts_a_peer_source() -> None:
    entries = [entry("db", source("api", "deny", Peer="cluster-02"), source("api"))]
    assert find_exact(entries, "peer:cluster-02/api", "db")["Action"] == "deny"
    assert find_exact(entries, "api", "db")["Action"] == "allow"
    assert find_exact(entries, "web", "db") is None


# --------------------------------------------------------------------------------- PUT/DELETE /exact (§A.5)


def test_upsert_exact_creates_the_entry() -> None:
    written = upsert_exact(None, "web", "db", {"Action": "allow", "Description": "d", "ID": ID_A})
    assert written == {"Kind": "service-intentions", "Name": "db", "Sources": [
        {"Name": "web", "Action": "allow", "Description": "d", "Type": "consul", "Precedence": 9},
    ]}


def test_upsert_exact_replaces_a_source_of_the_same_name_and_keeps_the_rest() -> None:
    existing = entry("db", source("web", "allow", Description="old"), source("api", "deny"), Meta={"o": "t"})
    before = copy.deepcopy(existing)
    written = upsert_exact(existing, "web", "db", {"action": "deny"})
    assert existing == before, "the stored entry must not be mutated"
    assert written["Meta"] == {"o": "t"}
    assert [(s["Name"], s["Action"], s.get("Description")) for s in written["Sources"]] == [
        ("web", "deny", None), ("api", "deny", None),
    ]
    assert not {"CreateIndex", "ModifyIndex", "Hash"} & set(written)


def test_upsert_exact_appends_a_new_source() -> None:
    written = upsert_exact(entry("db", source("api")), "*", "db", {"Action": "deny"})
    assert [s["Name"] for s in written["Sources"]] == ["api", "*"]


def test_upsert_exact_l7_permissions() -> None:
    permissions = [{"Action": "deny", "HTTP": {"PathExact": "/admin"}}]
    written = upsert_exact(None, "web", "db", {"Permissions": permissions})
    assert written["Sources"][0]["Permissions"] == permissions
    assert "Action" not in written["Sources"][0]


def test_upsert_exact_meta_rule() -> None:
    with pytest.raises(ConfigEntryError) as caught:
        upsert_exact(None, "web", "db", {"Action": "allow", "Meta": {"a": "b"}})
    assert (caught.value.field, caught.value.message) == ("Meta", "must not be specified")
    existing = entry("db", source("api"), Meta={"a": "b"})
    with pytest.raises(ConfigEntryError, match="Meta: must not be specified"):
        upsert_exact(existing, "web", "db", {"Action": "allow", "Meta": {"a": "c"}})
    written = upsert_exact(existing, "web", "db", {"Action": "allow", "Meta": {"a": "b"}})
    assert written["Meta"] == {"a": "b"}
    assert "Meta" not in written["Sources"][1]


def test_upsert_exact_clears_legacy_fields_of_other_sources() -> None:
    written = upsert_exact(entry("db", legacy("api", ID_A)), "web", "db", {"Action": "allow"})
    assert all(not set(s) & {"LegacyID", "LegacyMeta", "LegacyCreateTime", "LegacyUpdateTime"}
               for s in written["Sources"])


def test_upsert_exact_refuses_to_drop_legacy_meta() -> None:
    with pytest.raises(ConfigEntryError) as caught:
        upsert_exact(entry("db", legacy("api", ID_A, meta={"k": "v"})), "web", "db", {"Action": "allow"})
    assert caught.value.field == "Sources[0].LegacyMeta"
    assert caught.value.message == "must be omitted"


@pytest.mark.parametrize(("source_ref", "destination", "body", "field", "message"), [
    ("web", "db", {}, "Sources[0].Action", "must be set to 'allow' or 'deny'"),
    ("web", "db", {"Action": "permit"}, "Sources[0].Action", "must be set to 'allow' or 'deny'"),
    ("web", "db", {"Action": "allow", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]},
     "Sources[0].Action", "must be omitted if Permissions are specified"),
    ("web", "*", {"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}, "Sources[0].Permissions",
     "cannot be specified on intentions with wildcarded destinations"),
    ("web", "db", {"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "v1"}}]},
     "Sources[0].Permissions[0].HTTP.PathPrefix", "doesn't start with '/': \"v1\""),
    ("web", "db", {"Action": "allow", "Description": "x" * 513}, "Sources[0].Description",
     "exceeds maximum length 512"),
    ("web", "db", {"Action": "allow", "SourceType": "external"}, "Sources[0].Type", "must be set to 'consul'"),
    ("we*", "db", {"Action": "allow"}, "Sources[0].Name", "wildcard character '*' cannot be used with partial values"),
    ("web", "d*", {"Action": "allow"}, "Name", "wildcard character '*' cannot be used with partial values"),
    ("peer:p/web", "db", {"Action": "allow"}, "source", "cannot specify a peer here"),
    ("web", "", {"Action": "allow"}, "destination", "required query parameter 'destination' not set"),
    ("web", "db", {"Action": 1}, "Action", "must be a string, got int"),
    ("web", "db", {"Permissions": "all"}, "Sources[0].Permissions", "must be a list of objects, got string"),
    ("web", "db", ["not", "an", "object"], "", "request body must be a JSON object"),
])
def test_upsert_exact_errors(source_ref: str, destination: str, body: Any, field: str, message: str) -> None:
    with pytest.raises(ConfigEntryError) as caught:
        upsert_exact(None, source_ref, destination, body)
    assert (caught.value.field, caught.value.message) == (field, message)


def test_delete_exact_removes_the_source() -> None:
    remaining = delete_exact(entry("db", source("web"), source("api")), "web")
    assert remaining is not None
    assert [s["Name"] for s in remaining["Sources"]] == ["api"]
    assert "ModifyIndex" not in remaining


def test_delete_exact_of_the_last_source_deletes_the_entry() -> None:
    assert delete_exact(entry("db", source("web")), "web") is None


def test_delete_exact_is_idempotent() -> None:
    existing = entry("db", source("api"))
    assert [s["Name"] for s in delete_exact(existing, "web")["Sources"]] == ["api"]
    assert delete_exact(None, "web") is None


def test_delete_exact_keeps_peer_source_of_the_same_name() -> None:
    remaining = delete_exact(entry("db", source("web"), source("web", Peer="p1")), "web")
    assert remaining is not None
    assert [(s["Name"], s.get("Peer")) for s in remaining["Sources"]] == [("web", "p1")]


# --------------------------------------------------------------------------------- legacy ID API (§A.3)


def legacy_body(**overrides: Any) -> dict[str, Any]:
    body = {"SourceName": "web", "DestinationName": "db", "Action": "allow", "Meta": {"team": "payments"}}
    body.update(overrides)
    return body


def test_legacy_create_builds_a_legacy_source() -> None:
    written = legacy_create(None, legacy_body(Description="why"), ID_A, NOW)
    assert written == {"Kind": "service-intentions", "Name": "db", "Sources": [{
        "Name": "web", "Action": "allow", "Description": "why", "Type": "consul", "LegacyID": ID_A,
        "LegacyMeta": {"team": "payments"}, "LegacyCreateTime": NOW, "LegacyUpdateTime": NOW, "Precedence": 9,
    }]}
    view = find_by_id([dict(written, CreateIndex=5, ModifyIndex=5)], ID_A)
    assert view is not None
    assert (view["ID"], view["CreatedAt"], view["Meta"], view["CreateIndex"]) == (ID_A, NOW,
                                                                                  {"team": "payments"}, 5)


def test_legacy_create_adds_to_an_all_legacy_entry() -> None:
    written = legacy_create(entry("db", legacy("api", ID_B)), legacy_body(SourceName="*"), ID_A, NOW)
    assert [s["LegacyID"] for s in written["Sources"]] == [ID_B, ID_A]


def test_legacy_create_mixing_rule() -> None:
    with pytest.raises(ConfigEntryError) as caught:
        legacy_create(entry("db", legacy("api", ID_B), source("cache")), legacy_body(), ID_A, NOW)
    assert str(caught.value) == ('cannot use legacy intention API to edit intentions with a destination of "db" '
                                 "after editing them via a service-intentions config entry")


def test_legacy_create_duplicate_pair() -> None:
    with pytest.raises(ConfigEntryError) as caught:
        legacy_create(entry("db", legacy("web", ID_B)), legacy_body(), ID_A, NOW)
    assert caught.value.field == "Sources[1]"
    assert caught.value.message == 'defines "web" more than once'


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"ID": ID_B}, "ID", "must be empty when creating a new intention"),
    ({"SourceName": ""}, "SourceName", "must be set"),
    ({"DestinationName": ""}, "DestinationName", "must be set"),
    ({"SourceName": "w*"}, "SourceName", "wildcard character '*' cannot be used with partial values"),
    ({"DestinationName": "*b"}, "DestinationName", "wildcard character '*' cannot be used with partial values"),
    ({"SourceNS": "d*"}, "SourceNS", "wildcard character '*' cannot be used with partial values"),
    ({"DestinationNS": "*x"}, "DestinationNS", "wildcard character '*' cannot be used with partial values"),
    ({"SourceNS": "*"}, "SourceName", "exact value cannot follow wildcard namespace"),
    ({"DestinationNS": "*"}, "DestinationName", "exact value cannot follow wildcard namespace"),
    ({"Description": "x" * 513}, "Description", "exceeds maximum length 512"),
    ({"Meta": {str(i): "v" for i in range(65)}}, "Meta", "exceeds maximum element count 64 (got 65)"),
    ({"Meta": {"k" * 129: "v"}}, "Meta", f'key "{"k" * 32}..." exceeds maximum length 128'),
    ({"Meta": {"k": "v" * 513}}, "Meta", 'value for key "k" exceeds maximum length 512'),
    ({"Action": ""}, "Action", "must be set to 'allow' or 'deny'"),
    ({"Action": "ALLOW"}, "Action", "must be set to 'allow' or 'deny'"),
    ({"Permissions": [{"Action": "allow"}]}, "Permissions", "must not be set when using the legacy APIs"),
    ({"SourceType": "external-uri"}, "SourceType", "must be set to 'consul'"),
    ({"SourcePeer": "cluster-02"}, "SourcePeer", "not supported on this endpoint. Use config entries instead"),
    ({"SourceSamenessGroup": "sg"}, "SourceSamenessGroup", "sameness groups are a consul enterprise feature"),
    ({"SourcePartition": "part"}, "SourcePartition", "Cannot specify a source partition with this endpoint"),
    ({"DestinationPartition": "part"}, "DestinationPartition",
     "Cannot specify a destination partition with this endpoint"),
    ({"SourceNS": "team"}, "SourceNS", "Invalid SourceNS(team): Namespaces is a Consul Enterprise feature"),
    ({"DestinationNS": "*", "DestinationName": "*"}, "DestinationNS",
     "Invalid DestinationNS(*): Namespaces is a Consul Enterprise feature"),
    ({"Meta": {"k": 1}}, "Meta", "must be an object of string values"),
])
def test_legacy_create_errors(overrides: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigEntryError) as caught:
        legacy_create(None, legacy_body(**overrides), ID_A, NOW)
    assert (caught.value.field, caught.value.message) == (field, message)


def test_legacy_field_errors_are_collected_together() -> None:
    with pytest.raises(IntentionErrors) as caught:
        legacy_create(None, {"SourceName": "w*", "Action": "maybe"}, ID_A, NOW)
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("SourceName", "wildcard character '*' cannot be used with partial values"),
        ("DestinationName", "must be set"),
        ("Action", "must be set to 'allow' or 'deny'"),
    ]
    assert isinstance(caught.value, ConfigEntryError) and caught.value.field == "SourceName"
    assert str(caught.value) == ("SourceName: wildcard character '*' cannot be used with partial values; "
                                 "DestinationName: must be set; Action: must be set to 'allow' or 'deny'")


def test_legacy_namespaces_default_and_keys_are_case_insensitive() -> None:
    written = legacy_create(None, {"sourcename": "web", "destinationname": "db", "action": "deny",
                                   "sourcens": "", "DestinationNS": "default"}, ID_A, NOW)
    assert written["Sources"][0]["Action"] == "deny"
    assert "LegacyMeta" not in written["Sources"][0], "canonical entries drop empty maps"


def stored_legacy() -> list[dict[str, Any]]:
    return [entry("db", legacy("web", ID_A, meta={"a": "1"}), legacy("api", ID_B)), entry("cache", source("x"))]


def test_legacy_update_keeps_created_at_and_may_change_the_source() -> None:
    destination, written = legacy_update(stored_legacy(), ID_A, legacy_body(SourceName="*", Action="deny",
                                                                             ID="ignored"), LATER)
    assert destination == "db"
    updated = next(s for s in written["Sources"] if s["LegacyID"] == ID_A)
    assert (updated["Name"], updated["Action"], updated["Precedence"]) == ("*", "deny", 8)
    assert (updated["LegacyCreateTime"], updated["LegacyUpdateTime"]) == (NOW, LATER)
    assert updated["LegacyMeta"] == {"team": "payments"}
    assert [s["Name"] for s in written["Sources"]] == ["api", "*"]


def test_legacy_update_errors() -> None:
    with pytest.raises(ConfigEntryError) as caught:
        legacy_update(stored_legacy(), "missing", legacy_body(), LATER)
    assert (caught.value.field, caught.value.message) == ("ID", "Cannot modify non-existent intention: 'missing'")
    with pytest.raises(ConfigEntryError) as caught:
        legacy_update(stored_legacy(), ID_A, legacy_body(DestinationName="cache"), LATER)
    assert caught.value.message == "Cannot modify Destination partition/namespace/name for an intention once it exists."
    with pytest.raises(ConfigEntryError, match="Action: must be set"):
        legacy_update(stored_legacy(), ID_A, legacy_body(Action="nope"), LATER)
    with pytest.raises(ConfigEntryError, match='defines "api" more than once'):
        legacy_update(stored_legacy(), ID_A, legacy_body(SourceName="api"), LATER)
    mixed = [entry("db", legacy("web", ID_A), source("api"))]
    with pytest.raises(ConfigEntryError, match="cannot use legacy intention API"):
        legacy_update(mixed, ID_A, legacy_body(), LATER)


def test_legacy_delete() -> None:
    destination, remaining = legacy_delete(stored_legacy(), ID_A)
    assert destination == "db"
    assert remaining is not None and [s["LegacyID"] for s in remaining["Sources"]] == [ID_B]
    assert legacy_delete([entry("db", legacy("web", ID_A))], ID_A) == ("db", None)
    with pytest.raises(ConfigEntryError) as caught:
        legacy_delete(stored_legacy(), "gone")
    assert (caught.value.field, caught.value.message) == ("ID", "Cannot delete non-existent intention: 'gone'")
    with pytest.raises(ConfigEntryError, match="cannot use legacy intention API"):
        legacy_delete([entry("db", legacy("web", ID_A), source("api"))], ID_A)


def test_find_by_id_unknown_and_new_style_have_no_id() -> None:
    assert find_by_id(stored_legacy(), "nope") is None
    assert find_by_id(stored_legacy(), "") is None


# --------------------------------------------------------------------------------- canonical results


def test_write_results_are_canonical_and_valid_config_entries() -> None:
    permissions = [{"action": "allow", "http": {"pathPrefix": "/v1", "methods": ["get"]}}]
    by_name = upsert_exact(entry("db", source("api")), "web", "db", {"Permissions": permissions})
    assert normalize(by_name) == by_name
    validate(by_name)
    assert [s["Name"] for s in by_name["Sources"]] == ["api", "web"], "equal precedence keeps write order"
    assert by_name["Sources"][1]["Permissions"] == [{"Action": "allow", "HTTP": {"PathPrefix": "/v1",
                                                                                  "Methods": ["GET"]}}]
    by_id = legacy_create(None, legacy_body(), ID_A, NOW)
    assert normalize(by_id) == by_id
    validate(by_id, legacy_write=True)
    _, updated = legacy_update([dict(by_id, CreateIndex=3, ModifyIndex=3)], ID_A, legacy_body(Action="deny"), LATER)
    assert normalize(updated) == updated
    validate(updated, legacy_write=True)


def test_legacy_times_must_be_rfc3339() -> None:
    with pytest.raises(ConfigEntryError) as caught:
        legacy_create(None, legacy_body(), ID_A, "yesterday")
    assert caught.value.field == "Sources[0].LegacyCreateTime"


# --------------------------------------------------------------------------------- Hash (§A.2)


def legacy_view(**overrides: Any) -> dict[str, Any]:
    [view] = intention_views([entry("db", legacy("web", ID_A, meta={"a": "1", "b": "2"}))])
    view.update(overrides)
    return view


def test_hash_is_stable_across_reads_indexes_and_timestamps() -> None:
    first = legacy_view()
    assert intention_hash(first) == first["Hash"]
    [reread] = intention_views([entry("db", legacy("web", ID_A, meta={"b": "2", "a": "1"}), create=99, modify=100)])
    assert reread["Hash"] == first["Hash"]
    assert intention_hash(legacy_view(UpdatedAt=LATER)) == first["Hash"]


@pytest.mark.parametrize("change", [
    {"Action": "deny"}, {"Description": "x"}, {"SourceName": "api"}, {"DestinationName": "cache"},
    {"Precedence": 8}, {"Meta": {"a": "1"}}, {"Meta": {"a": "1", "b": "3"}}, {"ID": ID_B},
])
def test_hash_changes_with_covered_fields(change: dict[str, Any]) -> None:
    assert intention_hash(legacy_view(**change)) != legacy_view()["Hash"]


def test_hash_fields_do_not_run_into_each_other() -> None:
    assert intention_hash({"ID": "ab", "Description": ""}) != intention_hash({"ID": "a", "Description": "b"})


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=6))
def test_hash_ignores_meta_order(meta: dict[str, str]) -> None:
    reversed_meta = dict(reversed(list(meta.items())))
    assert intention_hash({"ID": ID_A, "Meta": meta}) == intention_hash({"ID": ID_A, "Meta": reversed_meta})


@pytest.mark.parametrize("acl_enabled, default_policy, allows", [
    (False, "allow", True), (False, "deny", True),  # ACLs off: allow, whatever the (unused) policy
    (True, "allow", True), (True, "deny", False),
])
def test_default_action_follows_the_acl_default_policy(acl_enabled: bool, default_policy: str, allows: bool) -> None:
    """reference/acl.md §6.4: no matching intention => acl.default_policy when ACLs are on."""
    from meshfed.fsm.intentions import check, default_allows

    assert default_allows(acl_enabled, default_policy) is allows
    assert check([], "web", "db", default_allows(acl_enabled, default_policy)) is allows

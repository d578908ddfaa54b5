"""`?filter=` expressions (go-bexpr's language) over the JSON rows meshfed answers with."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.server.http import filter_schemas
from meshfed.server.http.filtering import FilterError, compile_filter

NODES: list[dict[str, Any]] = [
    {"ID": "", "Node": "web-1", "Address": "10.0.0.1", "Datacenter": "dc1",
     "TaggedAddresses": {"lan": "10.0.0.1", "wan": "198.51.100.1"}, "Meta": {"env": "prod", "rack": "r1"}},
    {"ID": "", "Node": "web-2", "Address": "10.0.0.2", "Datacenter": "dc1",
     "TaggedAddresses": None, "Meta": {"env": "staging"}},
    {"ID": "", "Node": "db", "Address": "10.0.1.1", "Datacenter": "dc1", "TaggedAddresses": None, "Meta": None},
]


@pytest.mark.parametrize(("expression", "expected"), [
    ('Node == "web-1"', ["web-1"]),
    ("Node == db", ["db"]),                                   # unquoted word
    ("Node == `web-2`", ["web-2"]),                           # backtick (raw) string
    ('Node != "db"', ["web-1", "web-2"]),
    ('Meta.env == "prod"', ["web-1"]),
    ('Meta["env"] == "staging"', ["web-2"]),                  # index form of a map key
    ('Meta.env != "prod"', ["web-2", "db"]),                  # a missing key reads as ""
    ('"rack" in Meta', ["web-1"]),                            # map: key membership
    ('"rack" not in Meta', ["web-2", "db"]),
    ("Meta contains env", ["web-1", "web-2"]),
    ("Meta not contains env", ["db"]),
    ("Meta is empty", ["db"]),                                # null map is empty
    ("Meta is not empty", ["web-1", "web-2"]),
    ("TaggedAddresses is not empty", ["web-1"]),
    ('"web" in Node', ["web-1", "web-2"]),                    # string: substring
    ('Node contains "-"', ["web-1", "web-2"]),
    ('Node matches "^web-[0-9]$"', ["web-1", "web-2"]),
    ('Node not matches "^web"', ["db"]),
    ('Address matches "^10\\\\.0\\\\.0\\\\."', ["web-1", "web-2"]),  # escapes in a quoted string
    ('not Node == "db"', ["web-1", "web-2"]),
    ('Node == db or Meta.env == prod', ["web-1", "db"]),
    ('Node contains web and Meta.env == staging', ["web-2"]),
    # and binds tighter than or; not tighter than and; parentheses override
    ('Node == db or Node == "web-1" and Meta.env == staging', ["db"]),
    ('(Node == db or Node == "web-1") and Meta.env == prod', ["web-1"]),
    ('not (Node == db or Meta.env == prod)', ["web-2"]),
    ('not not Node == db', ["db"]),
    ("  Node==db  ", ["db"]),                                 # whitespace is free outside strings
    ("notes in Node", []),                                    # a word starting with a keyword is a word
])
def test_node_expressions(expression: str, expected: list[str]) -> None:
    predicate = compile_filter(expression, filter_schemas.NODE)
    assert [row["Node"] for row in NODES if predicate(row)] == expected


CSN = [
    {"Node": {"Node": "n1", "Meta": {"env": "prod"}},
     "Service": {"ID": "web-a", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080,
                 "EnableTagOverride": False, "Weights": {"Passing": 1, "Warning": 1}},
     "Checks": [{"CheckID": "serf", "Status": "passing"}, {"CheckID": "http", "Status": "critical"}]},
    {"Node": {"Node": "n2", "Meta": None},
     "Service": {"ID": "web-b", "Service": "web", "Tags": [], "Port": 9090,
                 "EnableTagOverride": True, "Weights": {"Passing": 3, "Warning": 1}},
     "Checks": [{"CheckID": "serf", "Status": "passing"}]},
]


@pytest.mark.parametrize(("expression", "expected"), [
    ('"v1" in Service.Tags', ["web-a"]),                      # list: element membership
    ("v1 not in Service.Tags", ["web-b"]),
    ("Service.Tags contains primary", ["web-a"]),
    ("Service.Tags is empty", ["web-b"]),
    ("Service.Port == 9090", ["web-b"]),                      # converted to the field's int
    ("Service.Port != 8080", ["web-b"]),
    ("Service.EnableTagOverride == true", ["web-b"]),         # and to bool
    ("Service.EnableTagOverride == F", ["web-a"]),            # strconv.ParseBool spellings
    ("Service.Weights.Passing == 3", ["web-b"]),
    ("Node.Meta.env == prod", ["web-a"]),
    ('Checks.Status == "critical"', ["web-a"]),               # through a list: any element
    ('Checks.Status != "critical"', ["web-b"]),               # the negation of any
    ("Checks.CheckID == http and Service.Port == 8080", ["web-a"]),
    ("Checks is not empty", ["web-a", "web-b"]),
])
def test_health_service_expressions(expression: str, expected: list[str]) -> None:
    predicate = compile_filter(expression, filter_schemas.CHECK_SERVICE_NODE)
    assert [row["Service"]["ID"] for row in CSN if predicate(row)] == expected


@pytest.mark.parametrize(("expression", "schema", "message"), [
    ("Foo == 1", filter_schemas.NODE, 'Selector "Foo" is not valid'),
    ("Node.Name == x", filter_schemas.NODE, 'Selector "Node.Name" is not valid'),
    ("Service.Bogus == x", filter_schemas.CHECK_SERVICE_NODE, 'Selector "Service.Bogus" is not valid'),
    ("node == x", filter_schemas.NODE, 'Selector "node" is not valid'),      # selectors are case-sensitive
    ("Meta == x", filter_schemas.NODE, 'Invalid match operator "==" for selector "Meta" (map)'),
    ("Service.Port matches 80", filter_schemas.CHECK_SERVICE_NODE, 'Invalid match operator "matches"'),
    ("Service.Port contains 8", filter_schemas.CHECK_SERVICE_NODE, 'Invalid match operator "contains"'),
    ("Service.Port == eighty", filter_schemas.CHECK_SERVICE_NODE, 'Failed to convert value "eighty" to int'),
    ("Service.EnableTagOverride == yes", filter_schemas.CHECK_SERVICE_NODE,
     'Failed to convert value "yes" to bool'),
    ('Node matches "("', filter_schemas.NODE, 'Invalid regular expression "("'),
    ('"x" == Node', filter_schemas.NODE, 'needs a selector, got the value "x"'),
    ("Node == Meta.env", filter_schemas.NODE, 'needs a value, got the selector "Meta.env"'),
    ("Node ==", filter_schemas.NODE, "syntax error: the expression ends too early"),
    ("Node = db", filter_schemas.NODE, "syntax error at 1:6 (5): unexpected character '='"),
    ("(Node == db", filter_schemas.NODE, "syntax error"),
    ("Node == db and", filter_schemas.NODE, "syntax error"),
    ('Node == "unterminated', filter_schemas.NODE, "syntax error"),
    ("Node == db db", filter_schemas.NODE, "syntax error"),
    ("", filter_schemas.NODE, "the expression is empty"),
    ("   ", filter_schemas.NODE, "the expression is empty"),
])
def test_bad_expressions_are_refused_with_the_reason(expression: str, schema: Any, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(expression, schema)
    assert message in str(caught.value)


def test_a_row_missing_fields_reads_zero_values_rather_than_failing() -> None:
    predicate = compile_filter('Service.Port == 0 and Service.Tags is empty and Node.Meta.x == ""',
                               filter_schemas.CHECK_SERVICE_NODE)
    assert predicate({}) is True
    assert predicate({"Service": None, "Node": {"Meta": None}, "Checks": None}) is True


def test_intention_and_service_node_schemas_take_their_documented_selectors() -> None:
    intention = compile_filter('Action == deny and SourceName == "web" and Precedence == 9',
                               filter_schemas.INTENTION)
    assert intention({"Action": "deny", "SourceName": "web", "Precedence": 9})
    assert not intention({"Action": "allow", "SourceName": "web", "Precedence": 9})
    row = compile_filter('ServiceMeta.version == "2" and NodeMeta is empty', filter_schemas.SERVICE_NODE)
    assert row({"ServiceMeta": {"version": "2"}, "NodeMeta": None})


TOKENS = ["Node", "Meta", ".", "env", "[", "]", '"x"', "`y`", "==", "!=", "in", "not", "contains", "is", "empty",
          "matches", "and", "or", "(", ")", "5", "-1.5", "true", '"\\\\"', '"(("', " ", "TaggedAddresses", "lan"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join)),
       st.lists(st.fixed_dictionaries({}, optional={
           "Node": st.one_of(st.none(), st.text(max_size=5), st.integers()),
           "Meta": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3),
                             st.lists(st.integers(), max_size=2)),
           "TaggedAddresses": st.one_of(st.none(), st.just({"lan": "10.0.0.1"}))}), max_size=3))
def test_any_text_compiles_or_is_refused_and_any_row_evaluates(expression: str, rows: list[dict[str, Any]]) -> None:
    """A client's expression can only be a FilterError (a 400), never another exception (a 500);
    and a compiled filter never raises on a row, whatever the row holds."""
    try:
        predicate = compile_filter(expression, filter_schemas.NODE)
    except FilterError:
        return
    for row in rows:
        assert predicate(row) in (True, False)

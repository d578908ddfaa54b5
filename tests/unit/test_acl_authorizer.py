"""ACL decisions (reference/acl.md §4.2, §4.3, §2.5, §4.4, §6.4), table-driven, plus merge properties.

Each row names the sentence of the reference it pins. The hypothesis tests check the two
properties issue #9 asks for: the order of policies never changes a decision, and adding a deny
rule to any policy never turns a deny into an allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.fsm.acl import (
    ANONYMOUS_ACCESSOR_ID,
    GLOBAL_MANAGEMENT_RULES,
    GLOBAL_READ_ONLY_RULES,
    INTENTION,
    Access,
    Authorizer,
    DefaultPolicy,
    NamedRule,
    PolicyRules,
    UnnamedRule,
    node_identity_rules,
    parse_rules,
    permission_denied_text,
    service_identity_rules,
)

ALLOW, DENY = DefaultPolicy.ALLOW, DefaultPolicy.DENY
R, L, W = Access.READ, Access.LIST, Access.WRITE


@dataclass(frozen=True)
class Row:
    cite: str
    policies: tuple[str, ...]
    default: DefaultPolicy
    resource: str
    access: Access
    name: str | None
    expected: bool


ROWS = [
    # §4.2 step 1: exact beats prefix; longest prefix wins.
    Row("§4.2.1 exact beats prefix", ('service_prefix "" { policy = "deny" }\nservice "web" { policy = "write" }',),
        DENY, "service", W, "web", True),
    Row("§4.2.1 exact beats a longer prefix", ('service_prefix "web" { policy = "write" }\nservice "web" { policy = "read" }',),
        DENY, "service", W, "web", False),
    Row("§4.2.1 longest prefix wins", ('service_prefix "w" { policy = "deny" }\nservice_prefix "we" { policy = "write" }',),
        DENY, "service", W, "web", True),
    Row("§4.2.1 longest prefix wins (deny)", ('service_prefix "" { policy = "write" }\nservice_prefix "we" { policy = "deny" }',),
        ALLOW, "service", R, "web", False),
    Row("§4.1 empty prefix matches everything", ('node_prefix "" { policy = "read" }',), DENY, "node", R, "anything", True),
    Row("§4.2.1 exact rule does not match other names", ('service "web" { policy = "write" }',), DENY, "service", R, "webx", False),
    # §4.2 step 2: a found rule is final.
    Row("§4.2.2 read denies write, no fall-through", ('service "web" { policy = "read" }',), ALLOW, "service", W, "web", False),
    Row("§4.2.2 read grants read", ('service "web" { policy = "read" }',), DENY, "service", R, "web", True),
    Row("§4.2.2 write grants read", ('node "n1" { policy = "write" }',), DENY, "node", R, "n1", True),
    Row("§4.2.2 deny denies under default allow", ('node "n1" { policy = "deny" }',), ALLOW, "node", R, "n1", False),
    Row("§4.2.2 list grants list", ('key_prefix "a/" { policy = "list" }',), DENY, "key", L, "a/b", True),
    Row("§4.2.2 list grants read", ('key_prefix "a/" { policy = "list" }',), DENY, "key", R, "a/b", True),
    Row("§4.2.2 list denies write", ('key_prefix "a/" { policy = "list" }',), ALLOW, "key", W, "a/b", False),
    Row("§4.2.2 read denies list", ('key "a/b" { policy = "read" }',), ALLOW, "key", L, "a/b", False),
    Row("§4.2.2 write grants list", ('key "a/b" { policy = "write" }',), DENY, "key", L, "a/b", True),
    Row("§4.2.2 unnamed read denies write", ('operator = "read"',), ALLOW, "operator", W, None, False),
    # §4.2 step 3: no rule → default policy, never acl under allow.
    Row("§4.2.3 no rule, default allow", (), ALLOW, "service", W, "web", True),
    Row("§4.2.3 no rule, default deny", (), DENY, "service", R, "web", False),
    Row("§4.2.3 no rule, default allow, operator", (), ALLOW, "operator", W, None, True),
    Row("§4.2.3/§9.29 allow default never grants acl:read", (), ALLOW, "acl", R, None, False),
    Row("§4.2.3 allow default never grants acl:write", (), ALLOW, "acl", W, None, False),
    Row("§4.2.3 an acl rule still grants under allow", ('acl = "read"',), ALLOW, "acl", R, None, True),
    Row("§4.2.3 other names fall through", ('service "web" { policy = "deny" }',), ALLOW, "service", W, "db", True),
    # §4.2 intentions from service rules.
    Row("§4.2 service write implies only intentions read", ('service "web" { policy = "write" }',), DENY, INTENTION, R, "web", True),
    Row("§4.2/§9.26 service write does not grant intentions write", ('service "web" { policy = "write" }',),
        ALLOW, INTENTION, W, "web", False),
    Row("§4.2 service read implies intentions read", ('service_prefix "" { policy = "read" }',), DENY, INTENTION, R, "x", True),
    Row("§4.2 service deny implies intentions deny", ('service "web" { policy = "deny" }',), ALLOW, INTENTION, R, "web", False),
    Row("§4.2 explicit intentions write", ('service "web" { policy = "read" intentions = "write" }',),
        DENY, INTENTION, W, "web", True),
    Row("§4.2 explicit intentions deny beside service write", ('service "web" { policy = "write" intentions = "deny" }',),
        ALLOW, INTENTION, R, "web", False),
    Row("§4.2 intentions use exact-beats-prefix too",
        ('service_prefix "" { policy = "read" intentions = "write" }\nservice "web" { policy = "write" }',),
        DENY, INTENTION, W, "web", False),
    Row("§4.2 no service rule: intentions use the default", (), ALLOW, INTENTION, W, "web", True),
    # §4.2 mesh/peering fall back to operator.
    Row("§4.2/§9.27 operator write implies mesh write", ('operator = "write"',), DENY, "mesh", W, None, True),
    Row("§4.2 operator write implies peering write", ('operator = "write"',), DENY, "peering", W, None, True),
    Row("§4.2 operator read gives mesh read only", ('operator = "read"',), ALLOW, "mesh", W, None, False),
    Row("§4.2 operator deny denies peering", ('operator = "deny"',), ALLOW, "peering", R, None, False),
    Row("§4.2 a mesh rule beats the operator fall-back", ('operator = "write"\nmesh = "read"',), DENY, "mesh", W, None, False),
    Row("§4.2 mesh rule does not grant operator", ('mesh = "write"',), DENY, "operator", R, None, False),
    Row("§4.2 keyring does not fall back to operator", ('operator = "write"',), DENY, "keyring", R, None, False),
    # §4.3 several policies.
    Row("§4.3/§9.25 read + deny on one key ⇒ deny", ('service "web" { policy = "read" }', 'service "web" { policy = "deny" }'),
        ALLOW, "service", R, "web", False),
    Row("§4.3 read + write ⇒ write", ('service "web" { policy = "read" }', 'service "web" { policy = "write" }'),
        DENY, "service", W, "web", True),
    Row("§4.3 list + write ⇒ write", ('key "k" { policy = "list" }', 'key "k" { policy = "write" }'), DENY, "key", W, "k", True),
    Row("§4.3 read + list ⇒ list", ('key "k" { policy = "read" }', 'key "k" { policy = "list" }'), DENY, "key", L, "k", True),
    Row("§4.3 exact still beats prefix after merge", ('service_prefix "" { policy = "deny" }', 'service "web" { policy = "write" }'),
        DENY, "service", W, "web", True),
    Row("§4.3 unnamed merge: write + deny ⇒ deny", ('operator = "write"', 'operator = "deny"'), ALLOW, "operator", R, None, False),
    Row("§9.24 prefix write + exact deny: db denied", ('service_prefix "" { policy = "write" }\nservice "db" { policy = "deny" }',),
        DENY, "service", W, "db", False),
    Row("§9.24 prefix write + exact deny: api allowed", ('service_prefix "" { policy = "write" }\nservice "db" { policy = "deny" }',),
        DENY, "service", W, "api", True),
    Row("§9.23 read rule denies register (write)", ('service "web" { policy = "read" }',), DENY, "service", W, "web", False),
    # The remaining named resources follow the same table.
    Row("§4.1 agent_prefix read", ('agent_prefix "" { policy = "read" }',), DENY, "agent", R, "node1", True),
    Row("§4.1 event write", ('event "deploy" { policy = "write" }',), DENY, "event", W, "deploy", True),
    Row("§4.1 query read denies write", ('query "q" { policy = "read" }',), ALLOW, "query", W, "q", False),
    Row("§4.1 session_prefix write", ('session_prefix "n" { policy = "write" }',), DENY, "session", W, "node1", True),
    Row("§4.1 keyring write", ('keyring = "write"',), DENY, "keyring", W, None, True),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.cite for row in ROWS])
def test_decision_table(row: Row) -> None:
    authorizer = Authorizer.from_rules([parse_rules(text) for text in row.policies], row.default)
    assert authorizer.allowed(row.resource, row.access, row.name) is row.expected


def test_named_shortcuts_match_allowed() -> None:
    rules = parse_rules(
        'acl = "read"\noperator = "write"\nkeyring = "read"\n'
        'service "web" { policy = "write" }\nnode "n1" { policy = "read" }\nagent "n1" { policy = "write" }\n'
        'key_prefix "a/" { policy = "list" }\nsession "s" { policy = "read" }\nevent "e" { policy = "read" }\n'
        'query "q" { policy = "write" }'
    )
    authorizer = Authorizer.from_rules([rules], DENY)
    assert (authorizer.acl_read(), authorizer.acl_write()) == (True, False)
    assert (authorizer.operator_read(), authorizer.operator_write()) == (True, True)
    assert (authorizer.mesh_read(), authorizer.mesh_write(), authorizer.peering_read(), authorizer.peering_write()) == (
        True, True, True, True)
    assert (authorizer.keyring_read(), authorizer.keyring_write()) == (True, False)
    assert (authorizer.service_read("web"), authorizer.service_write("web"), authorizer.service_write("db")) == (
        True, True, False)
    assert (authorizer.intention_read("web"), authorizer.intention_write("web")) == (True, False)
    assert (authorizer.node_read("n1"), authorizer.node_write("n1")) == (True, False)
    assert (authorizer.agent_read("n1"), authorizer.agent_write("n1")) == (True, True)
    assert (authorizer.key_read("a/b"), authorizer.key_list("a/b"), authorizer.key_write("a/b")) == (True, True, False)
    assert (authorizer.session_read("s"), authorizer.session_write("s")) == (True, False)
    assert (authorizer.event_read("e"), authorizer.event_write("e")) == (True, False)
    assert (authorizer.query_read("q"), authorizer.query_write("q")) == (True, True)


def test_any_checks() -> None:
    """§4.2 `...Any`: granted if some rule grants it; a denying catch-all blocks the default."""
    only_web = Authorizer.from_rules([parse_rules('service "web" { policy = "read" }')], DENY)
    assert only_web.service_read_any() and not only_web.service_write_any()
    assert not only_web.node_read_any()
    assert Authorizer.from_rules([], ALLOW).service_write_any()
    catch_all_read = Authorizer.from_rules([parse_rules('service_prefix "" { policy = "read" }')], ALLOW)
    assert catch_all_read.service_read_any() and not catch_all_read.service_write_any()
    some_write = parse_rules('service_prefix "" { policy = "deny" }\nservice "web" { policy = "write" }')
    assert Authorizer.from_rules([some_write], DENY).service_write_any()


def test_management_allows_everything_but_keeps_the_intention_default() -> None:
    """§2.4 management; §6.4 the intention default is the default policy whatever the token."""
    management = Authorizer.for_management(DENY)
    assert management.acl_write() and management.intention_write("x") and management.key_write("k")
    assert management.service_write_any()
    assert not management.intention_default_allow()
    assert Authorizer.for_management(ALLOW).intention_default_allow()
    assert not Authorizer.from_rules([], DENY).intention_default_allow()


def test_global_management_rules_grant_everything() -> None:
    """§2.4: the global-management policy's rules, compiled, allow every check."""
    authorizer = Authorizer.from_rules([GLOBAL_MANAGEMENT_RULES], DENY)
    for resource in ("acl", "keyring", "mesh", "operator", "peering"):
        assert authorizer.allowed(resource, W)
    for resource in ("agent", "event", "key", "node", "query", "service", "session", INTENTION):
        assert authorizer.allowed(resource, W, "any-name")


def test_global_read_only_rules_grant_only_reads() -> None:
    authorizer = Authorizer.from_rules([GLOBAL_READ_ONLY_RULES], ALLOW)
    assert authorizer.acl_read() and not authorizer.acl_write()
    assert authorizer.service_read("x") and not authorizer.service_write("x")
    assert authorizer.intention_read("x") and not authorizer.intention_write("x")


def test_service_identity() -> None:
    """§2.5 and §9.30: the service and its sidecar writable, every service and node readable."""
    authorizer = Authorizer.from_rules([service_identity_rules("web")], DENY)
    assert authorizer.service_write("web") and authorizer.service_write("web-sidecar-proxy")
    assert not authorizer.service_write("api")
    assert authorizer.service_read("api") and authorizer.node_read("any")
    assert not authorizer.node_write("any")
    assert authorizer.intention_read("web") and not authorizer.intention_write("web")


def test_node_identity() -> None:
    """§2.5: its node writable, every service readable, nothing more."""
    authorizer = Authorizer.from_rules([node_identity_rules("node1")], DENY)
    assert authorizer.node_write("node1") and not authorizer.node_write("node2")
    assert authorizer.service_read("web") and not authorizer.service_write("web")
    assert not authorizer.node_read("node2")


def test_unknown_resource_or_missing_name_is_a_programming_error() -> None:
    authorizer = Authorizer.from_rules([], ALLOW)
    with pytest.raises(ValueError):
        authorizer.allowed("servce", R, "web")
    with pytest.raises(ValueError):
        authorizer.allowed("service", R)
    with pytest.raises(ValueError):
        authorizer.allowed_on_any("operator", R)


@pytest.mark.parametrize(
    ("accessor", "resource", "access", "segment", "expected"),
    [
        ("6a1253d2-1785-24fd-91c2-f8e78c745511", "service", W, "web",
         "Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' lacks permission "
         "'service:write' on \"web\""),
        ("6a1253d2-1785-24fd-91c2-f8e78c745511", "operator", R, None,
         "Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' lacks permission "
         "'operator:read'"),
        (ANONYMOUS_ACCESSOR_ID, "service", W, "web",
         "Permission denied: anonymous token lacks permission 'service:write' on \"web\". The anonymous token is "
         "used implicitly when a request does not specify a token."),
        ("a", "key", L, 'say "hi"\\', "Permission denied: token with AccessorID 'a' lacks permission 'key:list' "
         'on "say \\"hi\\"\\\\"'),
    ],
)
def test_permission_denied_text(accessor: str, resource: str, access: Access, segment: str | None,
                                expected: str) -> None:
    """§4.4: the exact 403 text, the ` on ...` part only for named resources."""
    assert permission_denied_text(accessor, resource, access, segment) == expected


# --- merge properties -------------------------------------------------------------------------

NAMES = ["", "w", "we", "web", "db", "web-sidecar-proxy"]
NAMED = ["service", "node", "key", "agent"]
UNNAMED = ["acl", "operator", "mesh", "peering", "keyring"]
LEVELS = [Access.READ, Access.WRITE, Access.DENY]

named_rules = st.builds(
    lambda resource, name, prefix, access, intentions: NamedRule(
        resource, name, prefix, access, intentions if resource == "service" else None),
    st.sampled_from(NAMED), st.sampled_from(NAMES), st.booleans(), st.sampled_from(LEVELS),
    st.none() | st.sampled_from(LEVELS),
)
unnamed_rules = st.builds(UnnamedRule, st.sampled_from(UNNAMED), st.sampled_from(LEVELS))
policies = st.builds(lambda u, n: PolicyRules(tuple(u), tuple(n)),
                     st.lists(unnamed_rules, max_size=3), st.lists(named_rules, max_size=6))
deny_rules = st.one_of(
    st.builds(lambda r: PolicyRules(unnamed=(UnnamedRule(r, Access.DENY),)), st.sampled_from(UNNAMED)),
    st.builds(lambda r, n, p: PolicyRules(named=(NamedRule(r, n, p, Access.DENY),)),
              st.sampled_from(NAMED), st.sampled_from(NAMES), st.booleans()),
)
CHECKS = [(resource, access, None) for resource in UNNAMED for access in (R, W)] + [
    (resource, access, name)
    for resource in [*NAMED, INTENTION]
    for access in (R, L, W)
    for name in [*NAMES, "api", "webserver"]
]


def _decisions(authorizer: Authorizer) -> list[bool]:
    return [authorizer.allowed(resource, access, name) for resource, access, name in CHECKS]


@settings(max_examples=150, deadline=None)
@given(st.lists(policies, min_size=1, max_size=4), st.sampled_from(list(DefaultPolicy)), st.randoms())
def test_policy_order_never_changes_a_decision(token_policies: list[PolicyRules], default: DefaultPolicy,
                                               random: Random) -> None:
    """§4.3: rules merge by precedence, so any order of the same policies decides the same."""
    shuffled = list(token_policies)
    random.shuffle(shuffled)
    assert _decisions(Authorizer.from_rules(token_policies, default)) == _decisions(
        Authorizer.from_rules(shuffled, default))


@settings(max_examples=150, deadline=None)
@given(st.lists(policies, min_size=1, max_size=3), st.sampled_from(list(DefaultPolicy)), deny_rules,
       st.integers(min_value=0, max_value=2))
def test_adding_a_deny_never_grants(token_policies: list[PolicyRules], default: DefaultPolicy,
                                    deny: PolicyRules, where: int) -> None:
    """§4.3 deny > all: a deny rule added to any policy can only take permissions away."""
    target = where % len(token_policies)
    with_deny = [policy.with_rules(deny) if index == target else policy for index, policy in enumerate(token_policies)]
    before = _decisions(Authorizer.from_rules(token_policies, default))
    after = _decisions(Authorizer.from_rules(with_deny, default))
    assert all(was or not now for was, now in zip(before, after, strict=True))


# Names that reach every way a decision can be made for the rules the strategies draw: each name
# of NAMES (its exact rule, else its longest prefix), each name + "~" (governed by that name's
# prefix rule alone: no rule names or starts with "~"), and names no rule matches.
EVERY_KIND_OF_NAME = [*NAMES, *(name + "~" for name in NAMES), "api", "webserver", "x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(policies, min_size=1, max_size=4), st.sampled_from(list(DefaultPolicy)))
def test_allowed_on_all_agrees_with_every_name(token_policies: list[PolicyRules], default: DefaultPolicy) -> None:
    """A filter skips its list when `allowed_on_all` says so: it must never say so while some name
    is refused (that would show a row the token may not read), and it should say so whenever no
    name is (or the skip is lost for tokens like a gateway's)."""
    authorizer = Authorizer.from_rules(token_policies, default)
    for resource in [*NAMED, INTENTION]:
        for access in (R, L, W):
            every = all(authorizer.allowed(resource, access, name) for name in EVERY_KIND_OF_NAME)
            assert authorizer.allowed_on_all(resource, access) == every, (resource, access)


def test_allowed_on_all_for_the_tokens_that_read_long_lists() -> None:
    gateway = Authorizer.from_rules([parse_rules(
        'service "mesh-gateway" { policy = "write" }\nservice_prefix "" { policy = "read" }\n'
        'node_prefix "" { policy = "read" }\n')], DENY)
    assert gateway.allowed_on_all("service", R) and gateway.allowed_on_all("node", R)
    assert not gateway.allowed_on_all("service", W)
    one_service = Authorizer.from_rules([parse_rules('service "web" { policy = "read" }')], DENY)
    assert not one_service.allowed_on_all("service", R)
    assert Authorizer.from_rules([parse_rules('service "db" { policy = "read" }')], ALLOW).allowed_on_all("service", R)
    assert not Authorizer.from_rules([parse_rules('service "db" { policy = "deny" }')], ALLOW).allowed_on_all(
        "service", R)
    assert Authorizer.for_management().allowed_on_all("node", W)
    with pytest.raises(ValueError):
        gateway.allowed_on_all("operator", R)

"""The ACL rules language (reference/acl.md §4.1): every resource in HCL and JSON, and bad input.

Refusals must name the line (HCL) and the problem, and start the way Consul's do (§9 case 11).
"""

from __future__ import annotations

import pytest

from meshfed.fsm.acl import (
    GLOBAL_MANAGEMENT_RULES,
    GLOBAL_MANAGEMENT_RULES_TEXT,
    Access,
    NamedRule,
    PolicyRules,
    RulesError,
    UnnamedRule,
    parse_rules,
)

# The §4.1 sample document, one line per rule so line numbers are easy to check.
REFERENCE_SAMPLE = """\
acl      = "write"
operator = "read"
mesh     = "write"
peering  = "read"
keyring  = "read"
agent  "node1"   { policy = "read" }
agent_prefix   "" { policy = "read" }
event  "deploy"  { policy = "write" }
event_prefix   "" { policy = "read" }
key    "a/b"     { policy = "read" }
key_prefix     "" { policy = "list" }
node   "node1"   { policy = "write" }
node_prefix    "" { policy = "read" }
query  "q"       { policy = "read" }
query_prefix   "" { policy = "read" }
service "web"    { policy = "write"  intentions = "read" }
service_prefix "" { policy = "read" }
session "node1"  { policy = "write" }
session_prefix "" { policy = "read" }
"""

EXPECTED_SAMPLE = PolicyRules(
    unnamed=(
        UnnamedRule("acl", Access.WRITE),
        UnnamedRule("operator", Access.READ),
        UnnamedRule("mesh", Access.WRITE),
        UnnamedRule("peering", Access.READ),
        UnnamedRule("keyring", Access.READ),
    ),
    named=(
        NamedRule("agent", "node1", False, Access.READ),
        NamedRule("agent", "", True, Access.READ),
        NamedRule("event", "deploy", False, Access.WRITE),
        NamedRule("event", "", True, Access.READ),
        NamedRule("key", "a/b", False, Access.READ),
        NamedRule("key", "", True, Access.LIST),
        NamedRule("node", "node1", False, Access.WRITE),
        NamedRule("node", "", True, Access.READ),
        NamedRule("query", "q", False, Access.READ),
        NamedRule("query", "", True, Access.READ),
        NamedRule("service", "web", False, Access.WRITE, Access.READ),
        NamedRule("service", "", True, Access.READ),
        NamedRule("session", "node1", False, Access.WRITE),
        NamedRule("session", "", True, Access.READ),
    ),
)


def test_reference_sample_parses_every_resource() -> None:
    """§4.1: every resource keyword, named and unnamed, exact and prefix."""
    assert parse_rules(REFERENCE_SAMPLE) == EXPECTED_SAMPLE


def test_rules_remember_their_lines() -> None:
    rules = parse_rules(REFERENCE_SAMPLE)
    assert [rule.line for rule in rules.unnamed] == [1, 2, 3, 4, 5]
    assert [rule.line for rule in rules.named] == list(range(6, 20))


def test_json_form_from_the_reference() -> None:
    """§4.1 JSON form."""
    rules = parse_rules('{"operator":"read","service":{"web":{"policy":"write"}},"node_prefix":{"":{"policy":"read"}}}')
    assert rules == PolicyRules(
        unnamed=(UnnamedRule("operator", Access.READ),),
        named=(NamedRule("service", "web", False, Access.WRITE), NamedRule("node", "", True, Access.READ)),
    )


def test_json_and_hcl_of_every_resource_agree() -> None:
    json_document = """{
      "acl": "write", "operator": "read", "mesh": "write", "peering": "read", "keyring": "read",
      "agent": {"node1": {"policy": "read"}}, "agent_prefix": {"": {"policy": "read"}},
      "event": {"deploy": {"policy": "write"}}, "event_prefix": {"": {"policy": "read"}},
      "key": {"a/b": {"policy": "read"}}, "key_prefix": {"": {"policy": "list"}},
      "node": {"node1": {"policy": "write"}}, "node_prefix": {"": {"policy": "read"}},
      "query": {"q": {"policy": "read"}}, "query_prefix": {"": {"policy": "read"}},
      "service": {"web": {"policy": "write", "intentions": "read"}}, "service_prefix": {"": {"policy": "read"}},
      "session": {"node1": {"policy": "write"}}, "session_prefix": {"": {"policy": "read"}}
    }"""
    assert parse_rules(json_document) == EXPECTED_SAMPLE


def test_json_list_of_blocks_is_accepted() -> None:
    """HCL's JSON form may give repeated blocks as a list of objects."""
    rules = parse_rules('{"service": [{"web": {"policy": "write"}}, {"db": {"policy": "deny"}}]}')
    assert rules.named == (NamedRule("service", "web", False, Access.WRITE), NamedRule("service", "db", False, Access.DENY))


@pytest.mark.parametrize(
    "document",
    [
        'service "web" { policy = "write" }',
        'service "web" {\n  policy = "write"\n}',
        'service "web" { policy = "write", }',
        'service { web { policy = "write" } }',
        'service = { "web" = { policy = "write" } }',
        '# comment\n// another\n/* block\ncomment */ service "web" { policy = "write" } # trailing',
    ],
)
def test_hcl_spellings_of_one_rule(document: str) -> None:
    assert parse_rules(document).named == (NamedRule("service", "web", False, Access.WRITE),)


def test_repeated_rules_are_kept_for_the_merge() -> None:
    rules = parse_rules('service "web" { policy = "read" }\nservice "web" { policy = "deny" }')
    assert [rule.access for rule in rules.named] == [Access.READ, Access.DENY]


def test_repeated_json_keys_are_kept_like_hcl_repeats() -> None:
    rules = parse_rules('{"service": {"web": {"policy": "read"}}, "service": {"web": {"policy": "deny"}}}')
    assert [rule.access for rule in rules.named] == [Access.READ, Access.DENY]


def test_implied_intentions() -> None:
    """§4.2: unset intentions follow policy: read|write ⇒ read, deny ⇒ deny."""
    rules = parse_rules(
        'service "a" { policy = "write" }\nservice "b" { policy = "read" }\n'
        'service "c" { policy = "deny" }\nservice "d" { policy = "read" intentions = "write" }\n'
        'node "n" { policy = "write" }'
    )
    assert [rule.intention_access for rule in rules.named] == [Access.READ, Access.READ, Access.DENY, Access.WRITE, None]


def test_empty_document_is_no_rules() -> None:
    assert parse_rules("") == PolicyRules()
    assert parse_rules("  # nothing\n") == PolicyRules()
    assert parse_rules("{}") == PolicyRules()


def test_global_management_text_matches_its_rules() -> None:
    """§2.4: the built-in policy's Rules text says what the built-in rules do."""
    assert parse_rules(GLOBAL_MANAGEMENT_RULES_TEXT) == GLOBAL_MANAGEMENT_RULES


@pytest.mark.parametrize(
    ("document", "line", "words"),
    [
        # §9 case 11: an invalid level names the resource the way Consul does.
        ('service "x" { policy = "sudo" }', 1, ['Invalid service policy', '"sudo"', '"read", "write", "deny"']),
        ('\noperator = "sudo"', 2, ["Invalid operator policy", '"sudo"']),
        ('acl = "list"', 1, ["Invalid acl policy", '"list"']),
        ('node "n" { policy = "list" }', 1, ["Invalid node policy", 'node "n"', '"list"']),
        ('service "x" {\n  policy = "read"\n  intentions = "list"\n}', 3, ["Invalid service intentions policy"]),
        ('\n\nservice "x" {\n  intentions = "write"\n}', 3, ["Invalid service policy", 'service "x"', "no policy"]),
        ('node "n" {\n  policy = "read"\n  intentions = "read"\n}', 3, ["Invalid node policy", "unknown key 'intentions'"]),
        ('key "k" {\n  polcy = "read"\n}', 2, ["unknown key 'polcy'", "accepted: policy"]),
        ('service "x" {\n policy = "read"\n policy = "write"\n}', 3, ["sets policy twice"]),
        ('\nservce "x" { policy = "read" }', 2, ["Unknown ACL resource 'servce'", "service_prefix"]),
        ('operator "x" { policy = "read" }', 1, ["Invalid operator policy", 'operator = "read"']),
        ('service = "write"', 1, ["Invalid service policy", "needs a name"]),
        ('service "a" "b" { policy = "read" }', 1, ["takes one name"]),
        ('service "x" { policy = 3 }', 1, ["Invalid service policy", "policy = 3"]),
        # Syntax errors.
        ('service "web" {\n  policy = "read"\n', 3, ["expected '}'"]),
        ('acl =\n', 2, ["expected a value"]),
        ('operator = read', 1, ["bare word 'read'", 'quote it: "read"']),
        ('service "web" ]', 1, ['expected "=" or "{" after service "web"', "found ']'"]),
        ('service "web" policy = "read"', 1, ['service takes one name, got 2: "web" "policy"']),
        ('\nservice "web { policy = "read" }', 2, ["string is not closed"]),
        ('/* open\n\nservice "web" { policy = "read" }', 1, ["never closed"]),
        ('key "k" { policy = <<EOF\nread\nEOF\n}', 1, ["heredoc"]),
        ('key "${var}" { policy = "read" }', 1, ["interpolation"]),
        ('acl = "write"\n@', 2, ["unexpected character '@'"]),
        ('= "write"', 1, ["expected a name"]),
    ],
)
def test_bad_hcl_names_line_and_problem(document: str, line: int, words: list[str]) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(document)
    assert caught.value.line == line
    message = str(caught.value)
    assert message.startswith(f"line {line}: ")
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("document", "line", "words"),
    [
        ('{"service": {"x": {"policy": "sudo"}}}', None, ['Invalid service policy: service "x"', '"sudo"']),
        ('{"operator": "sudo"}', None, ["Invalid operator policy"]),
        ('{"servce": {}}', None, ["Unknown ACL resource 'servce'"]),
        ('{"service": {"x": null}}', None, ["is null"]),
        ('{"service": ', 1, ["invalid JSON"]),
        ('{\n"acl": "write",\n}', 3, ["invalid JSON"]),
        ('{"acl": {"policy": "write"}}', None, ["Invalid acl policy"]),
        ('{"service": {"x": {"policy": "read", "policy": "write"}}}', None, ["sets policy twice"]),
    ],
)
def test_bad_json_names_problem(document: str, line: int | None, words: list[str]) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(document)
    assert caught.value.line == line
    for word in words:
        assert word in str(caught.value)


def test_rules_are_immutable() -> None:
    rules = parse_rules('service "web" { policy = "write" }')
    with pytest.raises(AttributeError):
        rules.named = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        rules.named[0].access = Access.DENY  # type: ignore[misc]

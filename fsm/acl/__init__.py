"""ACL rules and decisions, as pure code: parse a rules document, merge policies, answer a permission.

Nothing here does I/O, reads a clock or holds state between calls; the server resolves tokens to
policies and hands their rules in (reference/acl.md §4).
"""

from meshfed.fsm.acl.authorizer import INTENTION, Authorizer, DefaultPolicy
from meshfed.fsm.acl.denial import ANONYMOUS_ACCESSOR_ID, permission_denied_text
from meshfed.fsm.acl.errors import RulesError
from meshfed.fsm.acl.identities import (
    GLOBAL_MANAGEMENT_POLICY_ID,
    GLOBAL_MANAGEMENT_RULES,
    GLOBAL_MANAGEMENT_RULES_TEXT,
    GLOBAL_READ_ONLY_POLICY_ID,
    GLOBAL_READ_ONLY_RULES,
    node_identity_rules,
    service_identity_rules,
)
from meshfed.fsm.acl.rules import Access, NamedRule, PolicyRules, UnnamedRule, parse_rules

__all__ = [
    "ANONYMOUS_ACCESSOR_ID",
    "GLOBAL_MANAGEMENT_POLICY_ID",
    "GLOBAL_MANAGEMENT_RULES",
    "GLOBAL_MANAGEMENT_RULES_TEXT",
    "GLOBAL_READ_ONLY_POLICY_ID",
    "GLOBAL_READ_ONLY_RULES",
    "INTENTION",
    "Access",
    "Authorizer",
    "DefaultPolicy",
    "NamedRule",
    "PolicyRules",
    "RulesError",
    "UnnamedRule",
    "node_identity_rules",
    "parse_rules",
    "permission_denied_text",
    "service_identity_rules",
]

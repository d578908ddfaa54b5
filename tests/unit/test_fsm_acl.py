"""ACL state in the FSM: each command and read (reference/acl.md §2, §3.1-§3.3)."""

from __future__ import annotations

import pytest

from meshfed.fsm import (
    ACLBootstrap,
    ACLPolicyBatchSet,
    ACLPolicyDelete,
    ACLPolicySet,
    ACLRoleDelete,
    ACLRoleSet,
    ACLTokenBatchSet,
    ACLTokenDelete,
    ACLTokenSet,
    CommandError,
    StateMachine,
    decode_batch,
    encode_batch,
    validate,
)
from meshfed.fsm.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshfed.fsm.acl.records import (
    ANONYMOUS_TOKEN_ACCESSOR_ID,
    ACLLink,
    ACLPolicy,
    ACLRole,
    ACLToken,
    NodeIdentity,
    ServiceIdentity,
)

GM = ACLLink(GLOBAL_MANAGEMENT_POLICY_ID)


class Log:
    """A machine fed one command per entry, at increasing indexes."""

    def __init__(self) -> None:
        self.machine = StateMachine()
        self.state = self.machine.state
        self.index = 0

    def apply(self, command, request_id: str = ""):
        self.index += 1
        (result,) = self.machine.apply(self.index, encode_batch([(request_id, command)]))
        return result


@pytest.fixture
def log() -> Log:
    return Log()


def token(accessor: str = "a1", secret: str = "s1", **fields) -> ACLToken:
    return ACLToken(accessor_id=accessor, secret_id=secret, create_time="2024-01-01T00:00:00Z", **fields)


def test_built_ins_exist_from_the_start(log):
    _, policy = log.state.acl_policy(GLOBAL_MANAGEMENT_POLICY_ID)
    assert policy is not None and policy.name == "global-management" and 'acl = "write"' in policy.rules
    assert log.state.acl_policy_by_name("global-management")[1] == policy
    _, anonymous = log.state.acl_token_by_secret("anonymous")
    assert anonymous is not None and anonymous.accessor_id == ANONYMOUS_TOKEN_ACCESSOR_ID
    assert log.state.acl_bootstrap_state() == (0, {"bootstrapped": False, "reset_index": 0})


def test_policy_set_creates_then_updates_keeping_create_index(log):
    assert log.apply(ACLPolicySet(ACLPolicy("p1", "node-read", rules='node_prefix "" { policy = "read" }'))).ok
    assert log.apply(ACLPolicySet(ACLPolicy("p1", "node-read", description="d"))).ok
    index, policy = log.state.acl_policy("p1")
    assert index == 2 and policy.create_index == 1 and policy.modify_index == 2
    assert policy.description == "d" and policy.hash


def test_policy_names_are_unique(log):
    log.apply(ACLPolicySet(ACLPolicy("p1", "ops")))
    result = log.apply(ACLPolicySet(ACLPolicy("p2", "ops")))
    assert not result.ok and result.error == 'Invalid Policy: A Policy with Name "ops" already exists'
    assert log.state.acl_policy("p2")[1] is None


def test_policy_bad_name_and_bad_rules_are_shape_errors():
    with pytest.raises(CommandError, match="invalid Name"):
        validate(ACLPolicySet(ACLPolicy("p1", "bad name!")))
    with pytest.raises(CommandError, match=r"^Failed to parse policy: line 1: Invalid service policy"):
        validate(ACLPolicySet(ACLPolicy("p1", "x", rules='service "x" { policy = "sudo" }')))


def test_global_management_rules_cannot_change_nor_be_deleted_but_may_be_renamed(log):
    _, builtin = log.state.acl_policy(GLOBAL_MANAGEMENT_POLICY_ID)
    changed = ACLPolicy(GLOBAL_MANAGEMENT_POLICY_ID, "global-management", rules='acl = "read"')
    assert "Changing the Rules" in log.apply(ACLPolicySet(changed)).error
    deleted = log.apply(ACLPolicyDelete(GLOBAL_MANAGEMENT_POLICY_ID))
    assert deleted.error == "Delete operation not permitted on the builtin global-management policy"
    renamed = ACLPolicy(GLOBAL_MANAGEMENT_POLICY_ID, "admin", description=builtin.description, rules=builtin.rules)
    assert log.apply(ACLPolicySet(renamed)).ok
    assert log.state.acl_policy_by_name("admin")[1].id == GLOBAL_MANAGEMENT_POLICY_ID


def test_policy_delete_reports_whether_it_existed(log):
    log.apply(ACLPolicySet(ACLPolicy("p1", "x")))
    assert log.apply(ACLPolicyDelete("p1")).value is True
    assert log.apply(ACLPolicyDelete("p1")).value is False
    assert log.state.acl_policies()[1] == [log.state.acl_policy(GLOBAL_MANAGEMENT_POLICY_ID)[1]]


def test_token_links_are_stored_by_id_and_named_on_read(log):
    log.apply(ACLPolicySet(ACLPolicy("p1", "first")))
    assert log.apply(ACLTokenSet(token(policies=(ACLLink("p1", "stale"), ACLLink("p1"))))).ok
    log.apply(ACLPolicySet(ACLPolicy("p1", "renamed")))
    _, read = log.state.acl_token_by_accessor("a1")
    assert read.policies == (ACLLink("p1", "renamed"),)
    log.apply(ACLPolicyDelete("p1"))
    assert log.state.acl_token_by_secret("s1")[1].policies == ()  # a dangling link stops applying


def test_token_set_refuses_unknown_links(log):
    assert log.apply(ACLTokenSet(token(policies=(ACLLink("nope"),)))).error == 'No such ACL policy with ID "nope"'
    assert log.apply(ACLTokenSet(token(roles=(ACLLink("nope"),)))).error == 'No such ACL role with ID "nope"'


def test_token_update_rules(log):
    log.apply(ACLTokenSet(token()))
    assert log.apply(ACLTokenSet(token(secret="s2"))).error == "Changing a tokens SecretID is not permitted"
    assert log.apply(ACLTokenSet(token(local=True))).error == "cannot toggle local mode of a1"
    expiring = token(expiration_time="2030-01-01T00:00:00Z")
    assert log.apply(ACLTokenSet(expiring)).error == "Cannot change expiration time of a1"
    later = ACLToken("a1", "s1", description="new", create_time="2025-01-01T00:00:00Z")
    assert log.apply(ACLTokenSet(later)).ok
    _, stored = log.state.acl_token_by_accessor("a1")
    assert stored.create_time == "2024-01-01T00:00:00Z" and stored.create_index == 1 and stored.modify_index == 5


def test_token_secret_and_accessor_are_unique_across_columns(log):
    log.apply(ACLTokenSet(token()))
    assert log.apply(ACLTokenSet(token("a2", "s1"))).error == "Invalid Token: SecretID is already in use"
    assert log.apply(ACLTokenSet(token("s1", "s9"))).error == "Invalid Token: AccessorID is already in use"
    assert log.apply(ACLTokenSet(token("a3", "a1"))).error == "Invalid Token: SecretID is already in use"


def test_token_identities_are_checked_for_shape():
    with pytest.raises(CommandError, match="invalid name"):
        validate(ACLTokenSet(token(service_identities=(ServiceIdentity("Web!"),))))
    with pytest.raises(CommandError, match="missing the datacenter"):
        validate(ACLTokenSet(token(node_identities=(NodeIdentity("n1", ""),))))
    with pytest.raises(CommandError, match="local token"):
        validate(ACLTokenSet(token(local=True, service_identities=(ServiceIdentity("web", ("dc1",)),))))


def test_token_delete(log):
    log.apply(ACLTokenSet(token()))
    assert log.apply(ACLTokenDelete("a1")).value is True
    assert log.apply(ACLTokenDelete("a1")).value is False
    anonymous = log.apply(ACLTokenDelete(ANONYMOUS_TOKEN_ACCESSOR_ID))
    assert anonymous.error == "Delete operation not permitted on the anonymous token"


def test_tokens_list_filters_and_sorts(log):
    log.apply(ACLPolicySet(ACLPolicy("p1", "x")))
    log.apply(ACLRoleSet(ACLRole("r1", "ops", policies=(ACLLink("p1"),))))
    log.apply(ACLTokenSet(token("b", "sb", policies=(ACLLink("p1"),))))
    log.apply(ACLTokenSet(token("a", "sa", roles=(ACLLink("r1"),))))
    _, everything = log.state.acl_tokens()
    assert [t.accessor_id for t in everything] == sorted(["a", "b", ANONYMOUS_TOKEN_ACCESSOR_ID])
    assert [t.accessor_id for t in log.state.acl_tokens(policy_id="p1")[1]] == ["b"]
    assert [t.accessor_id for t in log.state.acl_tokens(role_id="r1")[1]] == ["a"]


def test_roles(log):
    log.apply(ACLPolicySet(ACLPolicy("p1", "x")))
    assert log.apply(ACLRoleSet(ACLRole("r1", "ops", policies=(ACLLink("p1"),)))).ok
    assert log.apply(ACLRoleSet(ACLRole("r2", "ops"))).error == 'Invalid Role: A Role with Name "ops" already exists'
    assert log.apply(ACLRoleSet(ACLRole("r3", "bad", policies=(ACLLink("p9"),)))).error.startswith("No such ACL policy")
    _, role = log.state.acl_role_by_name("ops")
    assert role.policies == (ACLLink("p1", "x"),) and role.hash
    assert [r.id for r in log.state.acl_roles()[1]] == ["r1"]
    assert log.state.acl_roles(ids=["zz"])[1] == []
    assert log.apply(ACLRoleDelete("r1")).value is True
    assert log.state.acl_role("r1") == (5, None)


def test_bootstrap_once_then_refused_with_the_reset_index(log):
    assert log.apply(ACLBootstrap(token(policies=(GM,)))).value == 1
    assert log.state.acl_bootstrap_state() == (1, {"bootstrapped": True, "reset_index": 1})
    refused = log.apply(ACLBootstrap(token("a2", "s2", policies=(GM,))))
    assert refused.code == "conflict" and refused.error == "ACL bootstrap no longer allowed (reset index: 1)"
    wrong = log.apply(ACLBootstrap(token("a2", "s2"), reset_index=7))
    assert wrong.error == "Invalid bootstrap reset index (specified 7, reset index: 1)"
    assert log.apply(ACLBootstrap(token("a2", "s2", policies=(GM,)), reset_index=1)).value == 4
    assert log.state.acl_bootstrap_state()[1] == {"bootstrapped": True, "reset_index": 4}
    assert log.state.acl_token_by_secret("s2")[1].policies[0].name == "global-management"


def test_request_id_dedupes_acl_writes(log):
    first = log.apply(ACLBootstrap(token(policies=(GM,))), request_id="boot")
    again = log.apply(ACLBootstrap(token(policies=(GM,))), request_id="boot")
    assert first == again and again.ok


def test_batch_upserts_take_local_indexes(log):
    assert log.apply(ACLPolicyBatchSet((ACLPolicy("p1", "a"), ACLPolicy("p2", "b", create_index=99)))).ok
    assert [(p.id, p.create_index) for p in log.state.acl_policies(ids=["p1", "p2"])[1]] == [("p1", 1), ("p2", 1)]
    assert log.apply(ACLTokenBatchSet((token(policies=(ACLLink("p1", "a"),)),))).ok
    assert log.state.acl_token_by_accessor("a1")[1].policies == (ACLLink("p1", "a"),)


def test_commands_round_trip_through_the_log_encoding():
    commands = [
        ACLPolicySet(ACLPolicy("p1", "x", datacenters=("dc1",))),
        ACLRoleSet(ACLRole("r1", "y", policies=(ACLLink("p1"),), node_identities=(NodeIdentity("n", "dc1"),))),
        ACLTokenSet(token(service_identities=(ServiceIdentity("web", ("dc1",)),), expiration_time="2030-01-01T00:00:00Z")),
        ACLBootstrap(token(), reset_index=3),
        ACLTokenDelete("a1"), ACLPolicyDelete("p1"), ACLRoleDelete("r1"),
    ]
    decoded = decode_batch(encode_batch([("", c) for c in commands]))
    assert [c for _, c in decoded] == commands

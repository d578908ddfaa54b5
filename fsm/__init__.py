"""Pure, deterministic state machine: records, commands, the state store, apply and snapshots.

Nothing here does I/O, reads a clock or starts a thread (DESIGN.md §2); `server/raft.py` drives
`StateMachine` and the event loop reads `StateMachine.state`.
"""

from meshfed.fsm.acl.commands import (
    ACLBootstrap,
    ACLPolicyBatchSet,
    ACLPolicyDelete,
    ACLPolicySet,
    ACLRoleBatchSet,
    ACLRoleDelete,
    ACLRoleSet,
    ACLTokenBatchSet,
    ACLTokenDelete,
    ACLTokenSet,
)
from meshfed.fsm.commands import (
    AutopilotConfigSet,
    CAStateSet,
    CatalogDeregister,
    CatalogRegister,
    CheckUpdate,
    Command,
    ConfigEntryDelete,
    ConfigEntrySet,
    FederationStateBatchUpsert,
    FederationStateDelete,
    FederationStateUpsert,
    Noop,
    ServerRegister,
    validate,
    with_defaults,
)
from meshfed.fsm.log_entries import decode_batch, encode_batch, encode_entry, join_entries
from meshfed.fsm.machine import DEDUPE_WINDOW, StateMachine
from meshfed.fsm.results import (
    CODE_CONFLICT,
    CODE_INTERNAL,
    CODE_INVALID,
    CODE_NOT_FOUND,
    Result,
)
from meshfed.fsm.snapshot import SNAPSHOT_VERSION, SnapshotError, decode_frame, encode_frame
from meshfed.fsm.state import TABLES, StateStore
from meshfed.fsm.type_checks import CommandError

__all__ = [
    "ACLBootstrap",
    "ACLPolicyBatchSet",
    "ACLPolicyDelete",
    "ACLPolicySet",
    "ACLRoleBatchSet",
    "ACLRoleDelete",
    "ACLRoleSet",
    "ACLTokenBatchSet",
    "ACLTokenDelete",
    "ACLTokenSet",
    "AutopilotConfigSet",
    "CAStateSet",
    "ConfigEntryDelete",
    "ConfigEntrySet",
    "CODE_CONFLICT",
    "CODE_INTERNAL",
    "CODE_INVALID",
    "CODE_NOT_FOUND",
    "DEDUPE_WINDOW",
    "SNAPSHOT_VERSION",
    "TABLES",
    "CatalogDeregister",
    "CatalogRegister",
    "CheckUpdate",
    "Command",
    "CommandError",
    "FederationStateBatchUpsert",
    "FederationStateDelete",
    "FederationStateUpsert",
    "Noop",
    "Result",
    "ServerRegister",
    "SnapshotError",
    "StateMachine",
    "StateStore",
    "decode_batch",
    "decode_frame",
    "encode_batch",
    "encode_entry",
    "join_entries",
    "encode_frame",
    "validate",
    "with_defaults",
]

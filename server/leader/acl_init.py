"""The configured `acl.tokens.initial_management` token, written by the primary's leader at start.

Consul's leader does this in its ACL initialisation (reference/acl.md §2.4, §3.3) so that a
datacenter can start with ACLs on and default deny without anyone running `acl bootstrap`:
1. a token with that SecretID already stored: nothing to do (a restart, a new leader, or an
   operator who created it by hand). The secret alone decides; expiry is ignored, as in Consul,
   so a write never collides with an existing secret;
2. bootstrap still allowed: write it *through the bootstrap path* (`ACLBootstrap`), so the API
   bootstrap afterwards answers Consul's 403 with the reset index;
3. bootstrap already done (or lost a race to an API bootstrap): write it as an ordinary token.

Only the primary does this; a secondary receives the token by ACL replication. The routine is
one-shot per leadership term and idempotent: every new leader re-checks step 1 after its barrier.
The secret never appears in a log line.
"""

from __future__ import annotations

import datetime
import enum
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from meshfed.fsm import ACLBootstrap, ACLTokenSet, Command, Result
from meshfed.fsm.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshfed.fsm.acl.records import RESERVED_ID_PREFIX, ACLLink, ACLToken
from meshfed.fsm.consul_formats.timestamps import format_rfc3339
from meshfed.fsm.results import CODE_CONFLICT

log = logging.getLogger(__name__)

INITIAL_MANAGEMENT_DESCRIPTION = "Initial Management Token"


class Step(enum.Enum):
    NOTHING = "nothing"
    BOOTSTRAP = "bootstrap"
    SET = "set"


class _Reads(Protocol):
    def acl_token_by_secret(self, secret: str) -> tuple[int, Any]: ...

    def acl_bootstrap_state(self) -> tuple[int, dict[str, Any]]: ...


class _Proposer(Protocol):
    async def apply(self, commands: Sequence[tuple[str, Command]], timeout: float = 5.0) -> list[Result]: ...


def next_step(token_exists: bool, bootstrapped: bool) -> Step:
    """Pure decision of the module docstring's three cases."""
    if token_exists:
        return Step.NOTHING
    return Step.SET if bootstrapped else Step.BOOTSTRAP


def _accessor() -> str:
    while True:
        candidate = str(uuid.uuid4())
        if not candidate.startswith(RESERVED_ID_PREFIX):
            return candidate


def initial_management_token(secret: str, now: datetime.datetime) -> ACLToken:
    return ACLToken(
        accessor_id=_accessor(), secret_id=secret, description=INITIAL_MANAGEMENT_DESCRIPTION,
        policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID),), local=False,
        create_time=format_rfc3339(now, microseconds=True),
    )


async def ensure_initial_management(
    secret: str,
    state: _Reads,
    raft: _Proposer,
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
) -> Step:
    """Make sure the token exists; returns what was done. Raises RuntimeError when the write is
    refused for another reason than a lost bootstrap race (the supervisor logs it and retries)."""
    step = next_step(state.acl_token_by_secret(secret)[1] is not None, state.acl_bootstrap_state()[1]["bootstrapped"])
    if step is Step.NOTHING:
        return step
    token = initial_management_token(secret, now())
    if step is Step.BOOTSTRAP:
        (result,) = await raft.apply([("", ACLBootstrap(token))])
        if result.ok:
            log.info("bootstrapped ACLs with the configured initial management token (accessor %s)", token.accessor_id)
            return step
        if result.code != CODE_CONFLICT:
            raise RuntimeError(f"cannot bootstrap ACLs with the initial management token: {result.error}")
        # An API bootstrap won the race: the token still has to exist, as an ordinary one.
        step = Step.SET
    (result,) = await raft.apply([("", ACLTokenSet(token))])
    if not result.ok:
        raise RuntimeError(f"cannot create the initial management token: {result.error}")
    log.info("created the configured initial management token (accessor %s)", token.accessor_id)
    return step


async def run_initial_management(secret: str, state: _Reads, raft: _Proposer) -> None:
    """The leader routine: one `ensure_initial_management` per leadership term."""
    await ensure_initial_management(secret, state, raft)

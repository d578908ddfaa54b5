"""Proposing validated commands through Raft and mapping their results to RPC errors."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from meshfed.fsm import Command, CommandError, Result, validate
from meshfed.rpc.errors import RPCError, invalid
from meshfed.rpc.header import new_request_id
from meshfed.server.endpoints.ports import Proposer

RESULT_CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
    "internal": grpc.StatusCode.INTERNAL,
}


def request_id(given: str) -> str:
    return given or new_request_id()


def check_shape(commands: Sequence[Command]) -> None:
    """Shape validation before anything is proposed: a bad request never reaches the log."""
    for command in commands:
        try:
            validate(command)
        except CommandError as exc:
            raise invalid(str(exc)) from None


def raise_for(result: Result) -> Result:
    if not result.ok:
        raise RPCError(RESULT_CODES.get(result.code, grpc.StatusCode.INTERNAL), result.error)
    return result


async def propose(raft: Proposer, rid: str, command: Command) -> Result:
    check_shape([command])
    (result,) = await raft.apply([(request_id(rid), command)])
    return raise_for(result)

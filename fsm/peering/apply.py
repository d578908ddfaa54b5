"""Apply of the peering commands (reference connect-data.md §D.3, §D.4 state-store rules).

Decide first, mutate last, like every handler in fsm/machine.py: a refusal is a `PeeringRejected`
raised before anything changed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from meshfed.fsm.peering.commands import (
    PeeringDelete,
    PeeringExchangeSecret,
    PeeringImportSet,
    PeeringTrustBundleWrite,
    PeeringWrite,
)
from meshfed.fsm.peering.records import (
    STATE_ACTIVE,
    STATE_DELETING,
    STATE_PENDING,
    STATE_TERMINATED,
    ImportedService,
    PeeringSecrets,
)
from meshfed.fsm.peering.store import PeeringWrites
from meshfed.fsm.records import CONNECT_PROXY_KIND
from meshfed.fsm.results import CODE_CONFLICT, CODE_INVALID, CODE_NOT_FOUND

# A secret that does not match is a conflict here; the endpoint answers it as PermissionDenied.
CODE_PERMISSION_DENIED = CODE_CONFLICT


class PeeringRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _mode(dialer: bool) -> str:
    return "dialer" if dialer else "acceptor"


def apply_write(writer: PeeringWrites, index: int, command: PeeringWrite) -> dict[str, str]:
    """Returns the stored ID and establishment secret: a retried proposal (same request id) gets
    this remembered value, so the token it builds names the secret that was really stored."""
    incoming = command.peering
    existing = writer.peering(incoming.name)
    if existing is not None and existing.id != incoming.id:
        raise PeeringRejected(CODE_INVALID, f'A peering already exists with the name "{incoming.name}" and a different ID "{existing.id}"')
    if existing is None and writer.peering_by_id(incoming.id) is not None:
        raise PeeringRejected(CODE_INVALID, f"peering ID {incoming.id} is already in use by another name")
    if existing is None and incoming.state == STATE_DELETING:
        raise PeeringRejected(CODE_INVALID, "cannot create a new peering marked for deletion")
    if existing is not None:
        if existing.state == STATE_DELETING and incoming.state not in (STATE_DELETING, STATE_TERMINATED):
            raise PeeringRejected(CODE_INVALID, "cannot write to peering that is marked for deletion")
        if existing.is_dialer != incoming.is_dialer:
            raise PeeringRejected(
                CODE_INVALID,
                f"Cannot switch peering dialing mode from {_mode(existing.is_dialer)} to {_mode(incoming.is_dialer)}",
            )
    state = incoming.state or (existing.state if existing is not None else STATE_PENDING)
    stored = replace(
        incoming,
        state=state,
        remote_datacenter=incoming.remote_datacenter or (existing.remote_datacenter if existing else ""),
        created_at=existing.created_at if existing is not None and existing.created_at else incoming.created_at,
        imported_services=existing.imported_services if existing is not None else (),
        create_index=existing.create_index if existing is not None else index,
        modify_index=index,
    )
    secrets = writer.peering_secret_row(incoming.id) or PeeringSecrets(incoming.id)
    new_secrets = replace(
        secrets,
        establishment=command.establishment_secret or secrets.establishment,
        stream=command.stream_secret or secrets.stream,
    )
    if state == STATE_TERMINATED:
        # The peer deleted the peering: drop what it exported and the secrets; the row stays
        # until deleted here (reference peering.md §5).
        stored = replace(stored, imported_services=())
        new_secrets = PeeringSecrets(incoming.id)
        writer.replace_peering_imports(incoming.name, {}, index)
        writer.drop_peering_trust_bundle(incoming.name, index)
    writer.put_peering(stored, index)
    if new_secrets != secrets or writer.peering_secret_row(incoming.id) is None:
        writer.put_peering_secrets(new_secrets, index)
    return {"id": stored.id, "establishment_secret": new_secrets.establishment}


def apply_exchange(writer: PeeringWrites, index: int, command: PeeringExchangeSecret) -> str:
    """Spend the establishment secret: single use, compared in constant time. Returns the stream
    secret now stored (a retried proposal is answered from the dedupe window with this value)."""
    peering = writer.peering_by_id(command.peering_id)
    if peering is None:
        raise PeeringRejected(CODE_NOT_FOUND, f"peering with ID {command.peering_id} not found")
    if peering.state in (STATE_DELETING, STATE_TERMINATED):
        raise PeeringRejected(CODE_PERMISSION_DENIED, "invalid peering establishment secret")
    secrets = writer.peering_secret_row(peering.id)
    stored = secrets.establishment if secrets is not None else ""
    if not stored:
        raise PeeringRejected(CODE_PERMISSION_DENIED, "invalid establishment secret: peering was already established")
    if not hmac.compare_digest(stored.encode(), command.establishment_secret.encode()):
        raise PeeringRejected(CODE_PERMISSION_DENIED, "invalid peering establishment secret")
    writer.put_peering_secrets(PeeringSecrets(peering.id, establishment="", stream=command.stream_secret), index)
    writer.put_peering(replace(peering, state=STATE_ACTIVE, modify_index=index), index)
    return command.stream_secret


def apply_delete(writer: PeeringWrites, index: int, command: PeeringDelete) -> bool:
    """Idempotent: True when a row was removed."""
    if writer.peering(command.name) is None:
        return False
    writer.delete_peering(command.name, index)
    return True


def _synthetic_sidecars(service: ImportedService) -> bool:
    """The exporter's `<svc>-sidecar-proxy` set for a mesh service: stored and served on
    `health/connect?peer=`, but not a service the peer shares, so not in ImportedServices."""
    return bool(service.nodes) and all(n.service.kind == CONNECT_PROXY_KIND for n in service.nodes)


def apply_import(writer: PeeringWrites, index: int, command: PeeringImportSet) -> bool:
    peering = writer.peering(command.peer_name)
    if peering is None:
        raise PeeringRejected(CODE_NOT_FOUND, f'Peering not found for "{command.peer_name}"')
    if peering.state in (STATE_DELETING, STATE_TERMINATED):
        return False  # a round that raced a delete imports nothing
    services = {s.service: replace(s, modify_index=index) for s in command.services}
    names = tuple(sorted(name for name, s in services.items() if not _synthetic_sidecars(s)))
    writer.replace_peering_imports(command.peer_name, services, index)
    if names != peering.imported_services:
        writer.put_peering(replace(peering, imported_services=names, modify_index=index), index)
    return True


def apply_trust_bundle(writer: PeeringWrites, index: int, command: PeeringTrustBundleWrite) -> bool:
    """False (nothing stored) when the peering is going away: a round that raced a delete or a
    Terminated must not bring the peer's roots back."""
    bundle = command.bundle
    peering = writer.peering(bundle.peer_name)
    if peering is None:
        raise PeeringRejected(CODE_NOT_FOUND, f'Peering not found for "{bundle.peer_name}"')
    if peering.state in (STATE_DELETING, STATE_TERMINATED):
        return False
    writer.put_peering_trust_bundle(replace(bundle, peer_name=peering.name, modify_index=index), index)
    return True


PEERING_HANDLERS: dict[type, Callable[[Any, int, Any], Any]] = {
    PeeringWrite: apply_write,
    PeeringExchangeSecret: apply_exchange,
    PeeringDelete: apply_delete,
    PeeringImportSet: apply_import,
    PeeringTrustBundleWrite: apply_trust_bundle,
}

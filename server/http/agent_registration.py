"""Registering and deregistering a service on this server's own node, as Consul's agent does: the
one body of `PUT /v1/agent/service/register` and `.../deregister/<id>`, shared by those routes and
by the service definitions of the config files (server/service_definitions.py), so a definition in
a file and the same JSON sent by a client become exactly the same catalog rows.

A registration is Consul's `AgentServiceRegistration`; `Connect.SidecarService` becomes a second
registration with Consul's defaults (server/endpoints/sidecar.py). Both go through the catalog
decoder, so a bad field is refused naming it, and are written in one Raft entry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.records import to_wire
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.server.checks.definition import CheckDefinitionError, agent_check_fields
from meshfed.server.endpoints.agent_services import AgentServices
from meshfed.server.endpoints.sidecar import (
    SidecarError,
    parent_identity,
    sidecar_id,
    sidecar_registration,
    without_sidecar_spec,
)
from meshfed.server.http.decode import decode_catalog_register
from meshfed.server.http.params import BadRequest

CHECK_KEYS = ("Check", "Checks")


def _checks(service: Mapping[str, Any], service_id: str, name: str, node: str) -> list[dict[str, Any]]:
    """A service's own `Check`/`Checks`, with the ids and names Consul's agent gives them, and
    for TCP, HTTP and alias checks the settings the check runner reads (server/checks/)."""
    single = lookup(service, "Check")
    many = lookup(service, "Checks") or []
    if not isinstance(many, list):
        raise BadRequest("Checks: must be a list")
    checks = ([single] if isinstance(single, Mapping) and single else []) + list(many)
    out = []
    for n, check in enumerate(checks, start=1):
        if not isinstance(check, Mapping):
            raise BadRequest(f"Checks[{n - 1}]: must be an object")
        default_id = f"service:{service_id}" if len(checks) == 1 else f"service:{service_id}:{n}"
        try:
            run_by_agent = agent_check_fields(check, node)
        except CheckDefinitionError as exc:
            raise BadRequest(f"Invalid check: {exc}") from None
        out.append({**check, "CheckID": lookup(check, "CheckID", "ID") or default_id,
                    "Name": lookup(check, "Name") or f"Service '{name}' check", "ServiceID": service_id,
                    **run_by_agent})
    return out


def _catalog_body(node: str, address: str, datacenter: str, service: Mapping[str, Any]) -> dict[str, Any]:
    service_id, name = parent_identity(service)
    kind = lookup(service, "Kind")
    if kind == "connect-proxy" and not lookup(lookup(service, "Proxy") or {}, "DestinationServiceName"):
        raise BadRequest("Proxy.DestinationServiceName must be set")
    body = {k: v for k, v in service.items() if k not in CHECK_KEYS and k.lower() not in ("check", "checks")}
    body["ID"], body["Service"] = service_id, name
    body.pop("Name", None)
    node_record, svc, checks = decode_catalog_register(
        {"Node": node, "Address": address, "Datacenter": datacenter, "Service": body,
         "Checks": _checks(service, service_id, name, node)}, datacenter)
    return {"node": to_wire(node_record), "service": to_wire(svc), "checks": to_wire(checks)}


def registration_rows(raw: Mapping[str, Any], *, node: str, address: str, datacenter: str,
                      taken_ports: Collection[int], previous_sidecar_port: int | None) -> list[dict[str, Any]]:
    """The `Catalog/RegisterMany` rows for one registration: the service, then its sidecar if it
    asks for one. Pure, so a config file's definitions are checked with it at load time.

    Raises:
        BadRequest (or DecodeError, a 400 too) naming the field.
    """
    try:
        sidecar = sidecar_registration(raw, taken_ports, previous_sidecar_port)
    except SidecarError as exc:
        raise BadRequest(str(exc)) from None
    rows = [_catalog_body(node, address, datacenter, without_sidecar_spec(raw))]
    return rows + ([_catalog_body(node, address, datacenter, sidecar)] if sidecar else [])


async def register_service(agent: AgentServices, header: RequestHeader, raw: Mapping[str, Any]) -> QueryMeta:
    """Register `raw` (and its sidecar) on this server's node; re-registering keeps the sidecar's port."""
    try:
        parent_id, _ = parent_identity(raw)
    except SidecarError as exc:
        raise BadRequest(str(exc)) from None
    existing = agent.service(sidecar_id(parent_id))
    rows = registration_rows(raw, node=agent.node, address=agent.address, datacenter=agent.datacenter,
                             taken_ports=agent.sidecar_ports(sidecar_id(parent_id)),
                             previous_sidecar_port=existing.port if existing is not None else None)
    meta, _ = await agent.register_many(header, {"registrations": rows})
    return meta


async def deregister_service(agent: AgentServices, header: RequestHeader, service_id: str) -> QueryMeta:
    """Remove a service and its sidecar together; the caller has checked the service exists."""
    ids = [service_id] + ([sidecar_id(service_id)] if agent.service(sidecar_id(service_id)) else [])
    meta, _ = await agent.deregister_many(header, {"node": agent.node, "service_ids": ids})
    return meta

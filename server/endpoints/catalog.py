"""Catalog.* and Health.*: enough of Consul's catalog to register servers and mesh gateways and to
answer /v1/catalog/* and /v1/health/* (DESIGN §3).

Reads return wire records; the HTTP layer shapes them and applies `?filter=` to the shaped rows."""

from __future__ import annotations

import time
from typing import Any

import grpc

from meshfed.fsm import CatalogDeregister, CatalogRegister, CheckUpdate, Command
from meshfed.fsm.records import (
    CHECK_STATUSES,
    STATUS_CRITICAL,
    STATUS_PASSING,
    STATUS_WARNING,
    HealthCheck,
    Node,
    NodeService,
    check_from_wire,
    node_from_wire,
    service_from_wire,
    to_wire,
)
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import propose
from meshfed.server.requests.router import LazyBody

NODES = ("nodes",)
NODE_SERVICES = ("nodes", "services")
CHECKS = ("checks",)
# /v1/health/state/<state>: Consul's states; "any" is every check.
HEALTH_STATES = ("any", STATUS_PASSING, STATUS_WARNING, STATUS_CRITICAL)
SERVICES = ("services",)
HEALTH = ("nodes", "services", "checks")


def _field(body: Any, name: str, kind: type = str) -> Any:
    if not isinstance(body, dict):
        raise invalid("invalid request: body must be a map")
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise invalid(f"invalid request: {name} must be a {kind.__name__}")
    return value


class CatalogEndpoint:
    def __init__(self, *, state: StateStore, raft: Proposer, router: RequestRouter, queries: Queries) -> None:
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries

    def handlers(self) -> dict[str, Handler]:
        return {
            "Catalog/Register": self.register,
            "Catalog/Deregister": self.deregister,
            "Catalog/ListNodes": self.list_nodes,
            "Catalog/ListServices": self.list_services,
            "Catalog/ServiceInstances": self.service_instances,
            "Catalog/ServiceNodes": self.service_nodes,
            "Catalog/NodeServices": self.node_services,
            "Catalog/GatewayServices": self.gateway_services,
            "Health/ServiceNodes": self.health_service_nodes,
            "Health/NodeChecks": self.node_checks,
            "Health/ServiceChecks": self.service_checks,
            "Health/ChecksInState": self.checks_in_state,
            "Health/UpdateTTL": self.update_ttl,
        }

    async def register(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"node": wire Node, "service": wire NodeService|None, "checks": [wire HealthCheck]}."""
        try:
            node = node_from_wire(_field(body, "node", dict) or {})
            raw_service = _field(body, "service", dict)
            service = service_from_wire(raw_service) if raw_service else None
            checks = tuple(check_from_wire(c) for c in (_field(body, "checks", list) or []))
        except (TypeError, ValueError, KeyError) as exc:
            raise invalid(f"invalid request: {exc}") from None
        command = CatalogRegister(node=node, service=service, checks=checks)
        return await self._write_health("Catalog/Register", header, body, command)

    async def register_records(
        self, header: RequestHeader, node: Node, service: NodeService | None, checks: tuple[HealthCheck, ...]
    ) -> tuple[QueryMeta, Any]:
        """`register` for a caller that has the records already (the HTTP route): on the leader
        they go into the command as they are; the wire body is built only if the call is forwarded.
        `propose` validates the command either way."""

        def wire() -> dict[str, Any]:
            return {"node": to_wire(node), "service": to_wire(service) if service else None, "checks": to_wire(checks)}

        command = CatalogRegister(node=node, service=service, checks=checks)
        return await self._write_health("Catalog/Register", header, LazyBody(wire), command)

    async def deregister(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        node = _field(body, "node")
        if not node:
            raise invalid("Missing node name")
        command = CatalogDeregister(
            node=node, service_id=_field(body, "service_id") or "", check_id=_field(body, "check_id") or ""
        )
        return await self._write_health("Catalog/Deregister", header, body, command)

    async def _write_health(
        self, method: str, header: RequestHeader, body: Any, command: Command
    ) -> tuple[QueryMeta, Any]:
        """Commit `command` on the leader (forwarded there if need be) and answer true with the
        health tables' index, as Consul's catalog writes do."""

        async def local() -> tuple[QueryMeta, Any]:
            await propose(self._raft, header.request_id, command)
            return self._queries.meta(self._state.index(*HEALTH)), True

        return await self._router.serve(method, header, body, local, write=True)

    async def update_ttl(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"check_id", "status", "output", "node" (optional when the id is unique)}."""
        check_id = _field(body, "check_id")
        status = _field(body, "status")
        if not check_id:
            raise invalid("Missing check ID")
        if status not in CHECK_STATUSES:
            raise invalid(f"Status: must be one of {', '.join(CHECK_STATUSES)}, got {status!r}")
        output = _field(body, "output") or ""
        node = _field(body, "node") or ""

        async def local() -> tuple[QueryMeta, Any]:
            target = node
            matches = [c for c in self._state.checks_of_type("ttl") if c.check_id == check_id]
            if node:
                matches = [c for c in matches if c.node.lower() == node.lower()]
            if not matches:
                existing = self._state.get_check(node, check_id) if node else None
                if existing is not None:
                    raise invalid(f"CheckID {check_id!r} is not a TTL check")
                raise RPCError(grpc.StatusCode.NOT_FOUND, f"Unknown check ID {check_id!r}")
            if len(matches) > 1:
                raise invalid(f"CheckID {check_id!r} exists on several nodes; pass ?node=")
            target = matches[0].node
            await propose(
                self._raft,
                header.request_id,
                CheckUpdate(node=target, check_id=check_id, status=status, output=output, at=time.time()),
            )
            return self._queries.meta(self._state.index(*HEALTH)), True

        return await self._router.serve("Health/UpdateTTL", header, body, local, write=True)

    async def list_nodes(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            meta, nodes = await self._queries.run(header, NODES, self._state.catalog_nodes)
            return meta, [to_wire(n) for n in nodes]

        return await self._router.serve("Catalog/ListNodes", header, body, local, write=False)

    async def node_services(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"node"}. Answers {"node": wire Node or None, "services": [wire NodeService]}."""
        name = _field(body, "node")
        if not name:
            raise invalid("Must provide node")

        def read() -> tuple[int, dict[str, Any]]:
            index, node, services = self._state.catalog_node(name)
            return index, {"node": to_wire(node) if node else None, "services": [to_wire(s) for s in services]}

        async def local() -> tuple[QueryMeta, Any]:
            return await self._queries.run(header, NODE_SERVICES, read)

        return await self._router.serve("Catalog/NodeServices", header, body, local, write=False)

    async def gateway_services(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"gateway"}. The services linked to a terminating or ingress gateway by its config
        entry. meshfed stores neither kind (a mesh gateway links none, in Consul too), so the
        answer is always empty; it still blocks on config entries as Consul's does."""
        if not _field(body, "gateway"):
            raise invalid("Must provide gateway name")

        async def local() -> tuple[QueryMeta, Any]:
            return await self._queries.run(
                header, ("config_entries",), lambda: (self._state.index("config_entries"), [])
            )

        return await self._router.serve("Catalog/GatewayServices", header, body, local, write=False)

    async def _checks(self, method: str, header: RequestHeader, body: Any, **where: str | None) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            meta, checks = await self._queries.run(header, CHECKS, lambda: self._state.health_checks(**where))
            return meta, [to_wire(c) for c in checks]

        return await self._router.serve(method, header, body, local, write=False)

    async def node_checks(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"node"}: every check of one node, node-level and service checks alike."""
        node = _field(body, "node")
        if not node:
            raise invalid("Must provide node")
        return await self._checks("Health/NodeChecks", header, body, node=node)

    async def service_checks(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"service"}: the checks of every instance of one service (by name)."""
        service = _field(body, "service")
        if not service:
            raise invalid("Must provide service name")
        return await self._checks("Health/ServiceChecks", header, body, service=service)

    async def checks_in_state(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"state"}: any | passing | warning | critical (Consul's "Bad check state" else)."""
        state = _field(body, "state")
        if state not in HEALTH_STATES:
            raise invalid("Bad check state")
        return await self._checks("Health/ChecksInState", header, body, status=None if state == "any" else state)

    async def list_services(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            return await self._queries.run(header, SERVICES, self._state.catalog_services, share="catalog_services")

        return await self._router.serve("Catalog/ListServices", header, body, local, write=False)

    async def service_instances(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """Every [node, service] pair: `/v1/catalog/services?filter=` selects on instances (Consul's
        ServiceNode rows) and folds what is left into {name: tags} at the HTTP layer. A method of
        its own, so a server without it answers "unknown method" rather than another shape."""

        async def local() -> tuple[QueryMeta, Any]:
            meta, pairs = await self._queries.run(header, ("nodes", "services"), self._state.catalog_instances)
            return meta, [[to_wire(n), to_wire(s)] for n, s in pairs]

        return await self._router.serve("Catalog/ServiceInstances", header, body, local, write=False)

    async def service_nodes(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        service = _field(body, "service")
        if not service:
            raise invalid("Missing service name")
        tag = _field(body, "tag")
        connect = bool(body.get("connect"))  # /v1/catalog/connect/<service>: its sidecars instead

        def query() -> tuple[int, list[list[Any]]]:
            index, pairs = self._state.catalog_service_nodes(service, tag, connect)
            return index, [[to_wire(n), to_wire(s)] for n, s in pairs]

        async def local() -> tuple[QueryMeta, Any]:
            # Shared by every waiter on the same service (and tag) at one store version.
            return await self._queries.run(header, ("nodes", "services"), query,
                                           share=("Catalog/ServiceNodes", service, tag, connect))

        return await self._router.serve("Catalog/ServiceNodes", header, body, local, write=False)

    async def health_service_nodes(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        service = _field(body, "service")
        if not service:
            raise invalid("Missing service name")
        tag = _field(body, "tag")
        passing = bool(body.get("passing"))
        connect = bool(body.get("connect"))  # /v1/health/connect/<service>: its sidecars instead

        def query() -> tuple[int, list[Any]]:
            index, csns = self._state.health_service_nodes(service, passing_only=passing, tag=tag, connect=connect)
            return index, [to_wire(c) for c in csns]

        async def local() -> tuple[QueryMeta, Any]:
            # Shared by every waiter on the same service (and tag, passing) at one store version:
            # the watch Envoy, consul-template and gateways keep open.
            return await self._queries.run(header, HEALTH, query,
                                           share=("Health/ServiceNodes", service, tag, passing, connect))

        return await self._router.serve("Health/ServiceNodes", header, body, local, write=False)

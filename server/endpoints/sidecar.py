"""Consul's defaults for `Connect.SidecarService` (reference/mesh-dataplane.md §1), as a pure
function of the parent registration and the ports already taken on the agent.

Input and output are Consul's JSON service shapes (`AgentServiceRegistration`), so the decoder
that checks every other service checks the sidecar too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.server.checks.definition import tcp_address

SIDECAR_MIN_PORT, SIDECAR_MAX_PORT = 21000, 21255
SIDECAR_SUFFIX = "-sidecar-proxy"
DEFAULT_LOCAL_SERVICE_ADDRESS = "127.0.0.1"
LISTENING_CHECK_NAME = "Connect Sidecar Listening"
ALIASING_CHECK_PREFIX = "Connect Sidecar Aliasing "
LISTENING_CHECK_INTERVAL = "10s"


class SidecarError(ValueError):
    """A sidecar that cannot be built; the message is Consul's."""


def sidecar_id(parent_id: str) -> str:
    return parent_id + SIDECAR_SUFFIX


def parent_identity(parent: Mapping[str, Any]) -> tuple[str, str]:
    """(ID, Name) of a registration; the ID defaults to the name, as Consul's agent does."""
    name = lookup(parent, "Name", "Service")
    if not isinstance(name, str) or not name:
        raise SidecarError("Missing service name")
    service_id = lookup(parent, "ID")
    return (service_id if isinstance(service_id, str) and service_id else name), name


def pick_port(taken: Collection[int], previous: int | None) -> int:
    """The sidecar's previous port if it had one, else the lowest free port of the range."""
    if previous:
        return previous
    for port in range(SIDECAR_MIN_PORT, SIDECAR_MAX_PORT + 1):
        if port not in taken:
            return port
    raise SidecarError("no port provided for sidecar_service and none left in the configured range "
                       f"[{SIDECAR_MIN_PORT}, {SIDECAR_MAX_PORT}]")


def sidecar_registration(parent: Mapping[str, Any], taken_ports: Collection[int],
                         previous_port: int | None = None) -> dict[str, Any] | None:
    """The sidecar's registration, or None when the parent asks for none."""
    connect = lookup(parent, "Connect")
    spec = lookup(connect, "SidecarService") if isinstance(connect, Mapping) else None
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise SidecarError("Connect.SidecarService: must be an object")
    parent_id, parent_name = parent_identity(parent)
    given_id = lookup(spec, "ID")
    if given_id and given_id != sidecar_id(parent_id):
        raise SidecarError(f"Connect.SidecarService.ID: the sidecar's ID is always {sidecar_id(parent_id)!r}")
    proxy = dict(lookup(spec, "Proxy") or {})
    proxy.setdefault("DestinationServiceName", parent_name)
    proxy.setdefault("DestinationServiceID", parent_id)
    proxy.setdefault("LocalServiceAddress", DEFAULT_LOCAL_SERVICE_ADDRESS)
    if lookup(parent, "Port"):
        proxy.setdefault("LocalServicePort", lookup(parent, "Port"))
    port = lookup(spec, "Port") or pick_port(taken_ports, previous_port)
    sidecar: dict[str, Any] = {
        "ID": sidecar_id(parent_id),
        "Name": lookup(spec, "Name", "Service") or parent_name + SIDECAR_SUFFIX,
        "Kind": "connect-proxy",
        "Port": port,
        "Address": lookup(spec, "Address") or lookup(parent, "Address") or "",
        "Tags": lookup(spec, "Tags") or lookup(parent, "Tags") or [],
        "Meta": lookup(spec, "Meta") or lookup(parent, "Meta") or {},
        "Proxy": proxy,
    }
    for key in ("TaggedAddresses", "Weights", "EnableTagOverride"):
        if lookup(spec, key) is not None:
            sidecar[key] = lookup(spec, key)
    own_checks = {key: lookup(spec, key) for key in ("Check", "Checks") if lookup(spec, key)}
    sidecar.update(own_checks or {"Checks": default_checks(parent_id, sidecar["Address"] or proxy["LocalServiceAddress"],
                                                           port)})
    return sidecar


def default_checks(parent_id: str, address: str, port: int) -> list[dict[str, Any]]:
    """Consul's sidecarDefaultChecks: the proxy's public port accepts connections, and the parent
    is healthy (an alias of it). The address is the sidecar's own, else the local service's: the
    proxy runs next to it. Both start critical, so a sidecar whose proxy has not started is not
    among the passing instances."""
    return [
        {"Name": LISTENING_CHECK_NAME, "TCP": tcp_address(address, port), "Interval": LISTENING_CHECK_INTERVAL},
        {"Name": ALIASING_CHECK_PREFIX + parent_id, "AliasService": parent_id},
    ]


def without_sidecar_spec(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The parent as stored: `Connect.SidecarService` is a request to the agent, not service data."""
    stored = dict(parent)
    for key in list(stored):
        if key.lower() == "connect" and isinstance(stored[key], Mapping):
            stored[key] = {k: v for k, v in stored[key].items() if k.lower() != "sidecarservice"}
    return stored

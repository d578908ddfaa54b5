"""Service definitions in config files: Consul's `service { ... }` and `services = [ ... ]`.

A definition is written in Consul's config-file spelling (snake_case: `local_bind_port`,
`sidecar_service`) and registered through the same path as `PUT /v1/agent/service/register`, which
takes Consul's JSON spelling (`LocalBindPort`, `SidecarService`). So every definition is converted
here, once, at load time, and a key that is not a field of its block is refused naming the file and
the dotted key (`service.connect.sidecar_service.proxy.upstreams[0].local_bind_prot`), the way every
other config key is.

Field names are matched as Go's decoders match them, ignoring case and underscores, so a file that
already uses the JSON spelling (`"LocalBindPort"`) loads too. Inside user maps (`meta`, proxy and
upstream `config`, check `header`, the names of `tagged_addresses`) the keys are data and are kept
exactly as written: `config { protocol = "http" }` stays `{"protocol": "http"}`, not `Protocol`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from meshfed.server.config.errors import ConfigError

# The keys of a config file that hold service definitions: one block, or a list of them.
SERVICE_KEYS = ("service", "services")

# A field's kind: a scalar type name, a user map kept as written, or a nested block (one, a list of
# them, or a map from user names to them).
Block = dict[str, tuple[str, Any]]  # field name -> (JSON name, Kind)
Kind = str | tuple[str, Block]

STRING, INTEGER, BOOLEAN, STRINGS, DURATION = "string", "integer", "boolean", "strings", "duration"
STRING_MAP, USER_MAP, HEADER_MAP = "string map", "user map", "header map"

MESH_GATEWAY: Block = {"mode": ("Mode", STRING)}
UPSTREAM: Block = {
    "destination_type": ("DestinationType", STRING), "destination_namespace": ("DestinationNamespace", STRING),
    "destination_partition": ("DestinationPartition", STRING), "destination_peer": ("DestinationPeer", STRING),
    "destination_name": ("DestinationName", STRING), "datacenter": ("Datacenter", STRING),
    "local_bind_address": ("LocalBindAddress", STRING), "local_bind_port": ("LocalBindPort", INTEGER),
    "local_bind_socket_path": ("LocalBindSocketPath", STRING),
    "local_bind_socket_mode": ("LocalBindSocketMode", STRING), "config": ("Config", USER_MAP),
    "mesh_gateway": ("MeshGateway", ("block", MESH_GATEWAY)), "centrally_configured": ("CentrallyConfigured", BOOLEAN),
}
EXPOSE_PATH: Block = {
    "listener_port": ("ListenerPort", INTEGER), "path": ("Path", STRING),
    "local_path_port": ("LocalPathPort", INTEGER), "protocol": ("Protocol", STRING),
}
EXPOSE: Block = {"checks": ("Checks", BOOLEAN), "paths": ("Paths", ("list", EXPOSE_PATH))}
TRANSPARENT_PROXY: Block = {
    "outbound_listener_port": ("OutboundListenerPort", INTEGER), "dialed_directly": ("DialedDirectly", BOOLEAN),
}
PROXY: Block = {
    "destination_service_name": ("DestinationServiceName", STRING),
    "destination_service_id": ("DestinationServiceID", STRING),
    "local_service_address": ("LocalServiceAddress", STRING), "local_service_port": ("LocalServicePort", INTEGER),
    "local_service_socket_path": ("LocalServiceSocketPath", STRING), "mode": ("Mode", STRING),
    "transparent_proxy": ("TransparentProxy", ("block", TRANSPARENT_PROXY)), "config": ("Config", USER_MAP),
    "upstreams": ("Upstreams", ("list", UPSTREAM)), "mesh_gateway": ("MeshGateway", ("block", MESH_GATEWAY)),
    "expose": ("Expose", ("block", EXPOSE)),
}
CHECK: Block = {
    "id": ("CheckID", STRING), "check_id": ("CheckID", STRING), "name": ("Name", STRING), "notes": ("Notes", STRING),
    "status": ("Status", STRING), "args": ("Args", STRINGS), "script_args": ("Args", STRINGS),
    "http": ("HTTP", STRING), "header": ("Header", HEADER_MAP), "method": ("Method", STRING),
    "body": ("Body", STRING), "disable_redirects": ("DisableRedirects", BOOLEAN), "tcp": ("TCP", STRING),
    "tcp_use_tls": ("TCPUseTLS", BOOLEAN), "udp": ("UDP", STRING), "interval": ("Interval", DURATION),
    "timeout": ("Timeout", DURATION), "ttl": ("TTL", DURATION), "docker_container_id": ("DockerContainerID", STRING),
    "shell": ("Shell", STRING), "grpc": ("GRPC", STRING), "grpc_use_tls": ("GRPCUseTLS", BOOLEAN),
    "h2ping": ("H2PING", STRING), "h2ping_use_tls": ("H2PingUseTLS", BOOLEAN),
    "tls_server_name": ("TLSServerName", STRING), "tls_skip_verify": ("TLSSkipVerify", BOOLEAN),
    "alias_node": ("AliasNode", STRING), "alias_service": ("AliasService", STRING),
    "os_service": ("OSService", STRING), "success_before_passing": ("SuccessBeforePassing", INTEGER),
    "failures_before_warning": ("FailuresBeforeWarning", INTEGER),
    "failures_before_critical": ("FailuresBeforeCritical", INTEGER),
    "deregister_critical_service_after": ("DeregisterCriticalServiceAfter", DURATION),
    "output_max_size": ("OutputMaxSize", INTEGER),
}
TAGGED_ADDRESS: Block = {"address": ("Address", STRING), "port": ("Port", INTEGER)}
WEIGHTS: Block = {"passing": ("Passing", INTEGER), "warning": ("Warning", INTEGER)}
LOCALITY: Block = {"region": ("Region", STRING), "zone": ("Zone", STRING)}
# Fields of a service and of its `sidecar_service` (which is a service definition itself, minus a
# sidecar of its own: Consul refuses that nesting, and so do we, in `_convert_block`).
SERVICE: Block = {
    "name": ("Name", STRING), "id": ("ID", STRING), "kind": ("Kind", STRING), "tags": ("Tags", STRINGS),
    "address": ("Address", STRING), "port": ("Port", INTEGER), "socket_path": ("SocketPath", STRING),
    "meta": ("Meta", STRING_MAP), "tagged_addresses": ("TaggedAddresses", ("map", TAGGED_ADDRESS)),
    "enable_tag_override": ("EnableTagOverride", BOOLEAN), "weights": ("Weights", ("block", WEIGHTS)),
    "token": ("Token", STRING), "namespace": ("Namespace", STRING), "partition": ("Partition", STRING),
    "locality": ("Locality", ("block", LOCALITY)), "check": ("Check", ("block", CHECK)),
    "checks": ("Checks", ("list", CHECK)), "proxy": ("Proxy", ("block", PROXY)),
}
CONNECT: Block = {"native": ("Native", BOOLEAN), "sidecar_service": ("SidecarService", ("block", SERVICE))}
SERVICE["connect"] = ("Connect", ("block", CONNECT))


@dataclass(frozen=True, eq=True)
class ServiceDefinition:
    """One service from a config file, in the JSON shape `PUT /v1/agent/service/register` takes.

    `key` is where it was written (`service`, `services[2]`), so a later refusal (the catalog
    decoder's, or a duplicate ID) still names file and key. The registration is a plain dict, and
    the dataclass is compared, never hashed: reload compares the running set with the new one."""

    source: str
    key: str
    registration: dict[str, Any] = field(repr=False)  # may hold a `Token`: never in a log line

    @property
    def service_id(self) -> str:
        return str(self.registration.get("ID") or self.registration.get("Name") or "")

    __hash__ = None  # type: ignore[assignment]


def _folded(name: str) -> str:
    return name.replace("_", "").casefold()


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def _scalar(kind: str, value: Any) -> Any:
    """The value if it has the kind's type; else ValueError with what was accepted."""
    if kind == STRING and isinstance(value, str):
        return value
    if kind == INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == BOOLEAN and isinstance(value, bool):
        return value
    if kind == DURATION and (isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool))):
        return value
    if kind == STRINGS and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    if kind == STRING_MAP and isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return dict(value)
    if kind == USER_MAP and isinstance(value, dict):
        return value
    if kind == HEADER_MAP and isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(item, str) for item in v) for v in value.values()):
        return dict(value)
    accepted = {STRING: "a string", INTEGER: "an integer", BOOLEAN: "true or false",
                DURATION: 'a duration such as "10s"', STRINGS: "a list of strings",
                STRING_MAP: "a map of strings", USER_MAP: "a map", HEADER_MAP: "a map of lists of strings"}[kind]
    raise ValueError(f"must be {accepted}, got {_show(value)}")


def _convert(value: Any, kind: Kind, source: str, key: str) -> Any:
    if isinstance(kind, str):
        try:
            return _scalar(kind, value)
        except ValueError as error:
            raise ConfigError(source, key, str(error)) from None
    shape, block = kind
    if shape == "block":
        return _convert_block(value, block, source, key)
    if shape == "list":
        # HCL writes a list of blocks as repeated blocks, or as one block when there is one.
        items = [value] if isinstance(value, dict) else value
        if not isinstance(items, list):
            raise ConfigError(source, key, f"must be a list of blocks, got {_show(value)}")
        return [_convert_block(item, block, source, f"{key}[{n}]") for n, item in enumerate(items)]
    # "map": user-chosen names (`lan`, `wan_ipv4`), each holding a block.
    if not isinstance(value, dict):
        raise ConfigError(source, key, f"must be a map of blocks, got {_show(value)}")
    return {name: _convert_block(item, block, source, f"{key}.{name}") for name, item in value.items()}


def _convert_block(raw: Any, block: Block, source: str, key: str) -> dict[str, Any]:
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]  # pyhcl gives a block written once with a list-valued key this way
    if not isinstance(raw, dict):
        more = "; write it once (use the plural key for several)" if isinstance(raw, list) else ""
        raise ConfigError(source, key, f"must be a block of keys, got {_show(raw)}{more}")
    by_folded = {_folded(name): name for name in block}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        field_key = f"{key}.{name}"
        known = by_folded.get(_folded(str(name)))
        if known is None:
            close = difflib.get_close_matches(str(name), list(block), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(source, field_key, f"unknown key{hint}")
        if block is SERVICE and known == "connect" and key.endswith("sidecar_service"):
            raise ConfigError(source, field_key, "a sidecar_service cannot have a connect block of its own")
        json_name, kind = block[known]
        if json_name in out:
            raise ConfigError(source, field_key, f"given twice (as {json_name} already)")
        out[json_name] = _convert(value, kind, source, field_key)
    return out


def convert_definitions(value: Any, source: str, key: str) -> tuple[ServiceDefinition, ...]:
    """The definitions under a top-level `service` (one block; pyhcl lists a repeated block) or
    `services` (a list) key of one file, converted to the registration JSON shape.

    Raises:
        ConfigError: naming the file and the dotted key of the first bad field.
    """
    items = value if isinstance(value, list) else [value]
    if key == "services" and not isinstance(value, list | dict):
        raise ConfigError(source, key, f"must be a list of service blocks, got {_show(value)}")
    out = []
    for n, item in enumerate(items):
        where = key if len(items) == 1 and not isinstance(value, list) else f"{key}[{n}]"
        registration = _convert_block(item, SERVICE, source, where)
        name = registration.get("Name")
        if not isinstance(name, str) or not name:
            raise ConfigError(source, f"{where}.name", "required: every service needs a name")
        out.append(ServiceDefinition(source, where, registration))
    return tuple(out)


def check_definitions(definitions: tuple[ServiceDefinition, ...], node: str, datacenter: str) -> None:
    """Refuse, at load time, what the registration itself would refuse: duplicate IDs, and whatever
    the catalog decoder and the sidecar defaults reject (a port out of range, a proxy without its
    destination), so a bad definition stops the start or the reload instead of being logged later.
    The check is the registration's own code, run without a node's taken ports."""
    seen: dict[str, ServiceDefinition] = {}
    for definition in definitions:
        first = seen.setdefault(definition.service_id, definition)
        if first is not definition:
            raise ConfigError(definition.source, definition.key,
                              f"service ID {definition.service_id!r} is already defined in {first.source} ({first.key})")
    if not definitions:
        return
    # Imported here: only a config with service definitions needs the HTTP layer's decoder.
    from meshfed.server.http.agent_registration import registration_rows
    from meshfed.server.http.decode import DecodeError
    from meshfed.server.http.params import BadRequest

    for definition in definitions:
        try:
            registration_rows(definition.registration, node=node, address="127.0.0.1", datacenter=datacenter,
                              taken_ports=(), previous_sidecar_port=None)
        except (BadRequest, DecodeError) as error:
            raise ConfigError(definition.source, definition.key, str(error)) from None

"""Which mesh-gateway mode applies to one upstream of a service, and which configuration level set it.

Consul spreads this decision over two places: the servers merge proxy-defaults and the downstream
service's service-defaults (`ComputeResolvedServiceConfig`), then the agent lays the instance's own
proxy config and each explicit upstream definition on top (`MergeServiceConfig`)
(reference/connect-data.md §B.6). meshfed answers it in one pure function so that the HTTP endpoint,
the CLI and the tests agree on the order, and so that an operator can see *which* level won rather
than only the result: the usual question is "why is this upstream going through the local gateway?".

The levels, highest first; the first one with a non-empty mode wins, an empty mode defers downwards:

    upstream                              the upstream definition of the proxy registration
    service-defaults-upstream-override    the service's UpstreamConfig.Overrides entry for that upstream
    service-instance                      the instance's Proxy.MeshGateway
    service-defaults-upstream-defaults    the service's UpstreamConfig.Defaults
    service-defaults                      the service's top-level MeshGateway
    proxy-defaults                        the global proxy-defaults MeshGateway
    default                               nothing set anywhere: mode "" (no gateway)

The config entries passed in are canonical (validated by `fsm.config_entries`), so their modes are
trusted; the two modes that come straight from a request are checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshfed.fsm.config_entries import MESH_GATEWAY_MODES, ConfigEntryError

MODE_DEFAULT = ""
MODE_NONE = "none"
MODE_LOCAL = "local"
MODE_REMOTE = "remote"
MODES = MESH_GATEWAY_MODES  # ("", "none", "local", "remote")

SOURCE_UPSTREAM = "upstream"
SOURCE_UPSTREAM_OVERRIDE = "service-defaults-upstream-override"
SOURCE_INSTANCE = "service-instance"
SOURCE_UPSTREAM_DEFAULTS = "service-defaults-upstream-defaults"
SOURCE_SERVICE_DEFAULTS = "service-defaults"
SOURCE_PROXY_DEFAULTS = "proxy-defaults"
SOURCE_DEFAULT = "default"

# Highest precedence first; `resolve_mesh_gateway_mode` walks this order.
LEVELS = (
    SOURCE_UPSTREAM,
    SOURCE_UPSTREAM_OVERRIDE,
    SOURCE_INSTANCE,
    SOURCE_UPSTREAM_DEFAULTS,
    SOURCE_SERVICE_DEFAULTS,
    SOURCE_PROXY_DEFAULTS,
)


def _mode_of(block: Any) -> str:
    """The `MeshGateway.Mode` inside a config block, or "" when the block or the mode is absent."""
    if not isinstance(block, Mapping):
        return MODE_DEFAULT
    gateway = block.get("MeshGateway")
    if not isinstance(gateway, Mapping):
        return MODE_DEFAULT
    mode = gateway.get("Mode")
    return mode if isinstance(mode, str) else MODE_DEFAULT


def _upstream_config(service_defaults: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The service's `UpstreamConfig` block, or None when there is none (or it is not a map)."""
    if not service_defaults:
        return None
    upstream_config = service_defaults.get("UpstreamConfig")
    return upstream_config if isinstance(upstream_config, Mapping) else None


def _upstream_override(service_defaults: Mapping[str, Any] | None, upstream: str) -> Mapping[str, Any] | None:
    """The service's override for a local upstream named exactly `upstream`.

    Overrides that name a peer describe an imported service, not the local one the question is
    about, so they never match here.
    """
    upstream_config = _upstream_config(service_defaults)
    if upstream_config is None:
        return None
    for override in upstream_config.get("Overrides") or ():
        if isinstance(override, Mapping) and override.get("Name") == upstream and not override.get("Peer"):
            return override
    return None


def _upstream_defaults(service_defaults: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    upstream_config = _upstream_config(service_defaults)
    if upstream_config is None:
        return None
    defaults = upstream_config.get("Defaults")
    return defaults if isinstance(defaults, Mapping) else None


def _check_request_mode(mode: str, field: str) -> None:
    # Consul's agent-side parsing rejects unknown modes with this message (§B.1); entries were
    # validated when written, but these two arrive unchecked from a query string.
    if mode not in MODES:
        raise ConfigEntryError(field, f'Invalid Mesh Gateway Mode: "{mode}"')


def resolve_mesh_gateway_mode(
    proxy_defaults: Mapping[str, Any] | None,
    service_defaults: Mapping[str, Any] | None,
    upstream: str,
    instance_mode: str = "",
    upstream_mode: str = "",
) -> tuple[str, str]:
    """The effective mesh-gateway mode for `upstream` of the service `service_defaults` describes.

    Args:
        proxy_defaults: the `proxy-defaults/global` entry, or None when there is none.
        service_defaults: the downstream service's `service-defaults` entry, or None.
        upstream: the upstream's service name, matched exactly against `UpstreamConfig.Overrides`.
        instance_mode: the instance's `Proxy.MeshGateway.Mode` ("" = not set).
        upstream_mode: the upstream definition's `MeshGateway.Mode` ("" = not set).

    Returns:
        `(mode, source)`: mode in `MODES`, source one of `LEVELS` or `SOURCE_DEFAULT` when every
        level is empty.

    Raises:
        ConfigEntryError: `instance_mode` or `upstream_mode` is not a known mode.
    """
    _check_request_mode(instance_mode, "instance_mode")
    _check_request_mode(upstream_mode, "upstream_mode")
    candidates = (
        (SOURCE_UPSTREAM, upstream_mode),
        (SOURCE_UPSTREAM_OVERRIDE, _mode_of(_upstream_override(service_defaults, upstream))),
        (SOURCE_INSTANCE, instance_mode),
        (SOURCE_UPSTREAM_DEFAULTS, _mode_of(_upstream_defaults(service_defaults))),
        (SOURCE_SERVICE_DEFAULTS, _mode_of(service_defaults)),
        (SOURCE_PROXY_DEFAULTS, _mode_of(proxy_defaults)),
    )
    for source, mode in candidates:
        if mode:
            return mode, source
    return MODE_DEFAULT, SOURCE_DEFAULT

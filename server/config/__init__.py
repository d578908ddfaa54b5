"""Agent configuration: HCL/JSON loading, defaults, validation with errors that name file, key
and reason, and Go duration strings.

The package is split by concept: ``settings`` (the typed config and every default), ``schema``
(the keys and the values each accepts), ``loader`` (read, flatten, merge), ``checks`` (rules across
keys, warnings), ``addresses`` (host:port parsing), ``cluster_key`` and ``errors``. Callers import
the public names from here.
"""

from meshfed.server.config.addresses import join_host_port, normalise_retry_join, split_host_port
from meshfed.server.config.checks import config_warnings
from meshfed.server.config.cluster_key import (
    CLUSTER_KEY_SIZES,
    KEYGEN_BYTES,
    MISSING_KEY_REASON,
    generate_key,
    validate_key,
)
from meshfed.server.config.errors import COMMAND_LINE, DEFAULTS, ConfigError
from meshfed.server.config.loader import CONFIG_EXTENSIONS, load
from meshfed.server.config.schema import LOG_LEVELS, MAX_RAFT_MULTIPLIER
from meshfed.server.config.settings import (
    ACLConfig,
    ACLTokens,
    Config,
    ConnectConfig,
    Ports,
    TelemetryConfig,
    TLSConfig,
)

__all__ = [
    "ACLConfig",
    "ACLTokens",
    "CLUSTER_KEY_SIZES",
    "COMMAND_LINE",
    "CONFIG_EXTENSIONS",
    "DEFAULTS",
    "KEYGEN_BYTES",
    "LOG_LEVELS",
    "MAX_RAFT_MULTIPLIER",
    "MISSING_KEY_REASON",
    "Config",
    "ConfigError",
    "ConnectConfig",
    "Ports",
    "TLSConfig",
    "TelemetryConfig",
    "config_warnings",
    "generate_key",
    "join_host_port",
    "load",
    "normalise_retry_join",
    "split_host_port",
    "validate_key",
]

"""Config entries: the schema of the five kinds meshfed stores, normalization and validation.

An entry moves through three shapes (reference/connect-data.md §B.1–B.3, §A.9):

  raw        what a user sent: JSON from `PUT /v1/config`, or an HCL/JSON file given to
             `meshfed config write` (parsed on the server side, `server/config/hcl.py`). Keys in
             any case, snake_case aliases, blocks that HCL decoders wrap in a one-item list.
  canonical  `normalize(raw)` (normalization.py): a plain dict with Consul's key spelling, zero values
             dropped and kind defaults applied, so that two writes with the same meaning give the
             same dict, the same `content_hash`, and the no-op short-circuit of §B.2 step 5 fires.
  valid      a canonical entry that `validate` (validation.py, intention_validation.py) accepted;
             only valid entries are proposed to Raft.

`schema.py` holds the field trees and value sets, `identity.py` answers "which entry is this" and
"did its content change". Pure: no I/O, no clock, no threads, no module state.

The names below are the package's public surface; callers import them from here.
"""

from meshfed.fsm.config_entries.errors import ConfigEntryError
from meshfed.fsm.config_entries.identity import (
    STORE_OWNED_FIELDS,
    config_entry_key,
    content_hash,
    entry_key,
    is_same_content,
    precedence,
    without_store_fields,
)
from meshfed.fsm.config_entries.normalization import normalize
from meshfed.fsm.config_entries.schema import (
    ACCESS_LOG_TYPES,
    BALANCE_MODES,
    CIPHER_SUITES,
    CONSUL_ONLY_KINDS,
    DEFAULT_SOURCE_TYPE,
    DESCRIPTION_MAX_LENGTH,
    ESCAPED_SLASHES_ACTIONS,
    EXPORTED_SERVICES_NAME,
    EXPOSE_PROTOCOLS,
    FAILOVER_POLICY_MODES,
    HTTP_METHODS,
    INTENTION_ACTIONS,
    KIND_EXPORTED_SERVICES,
    KIND_MESH,
    KIND_PROXY_DEFAULTS,
    KIND_SERVICE_DEFAULTS,
    KIND_SERVICE_INTENTIONS,
    KINDS,
    LOCALITY_MODES,
    MESH_GATEWAY_MODES,
    MESH_NAME,
    META_KEY_MAX_LENGTH,
    META_MAX_PAIRS,
    META_VALUE_MAX_LENGTH,
    MUTUAL_TLS_MODES,
    PROTOCOLS,
    PROXY_DEFAULTS_NAME,
    PROXY_MODES,
    TLS_VERSIONS,
    TLS_VERSIONS_WITH_CIPHER_SUITES,
    UNDERSCORE_HEADER_ACTIONS,
    WILDCARD,
)
from meshfed.fsm.config_entries.validation import validate

__all__ = [
    "ACCESS_LOG_TYPES", "BALANCE_MODES", "CIPHER_SUITES", "CONSUL_ONLY_KINDS", "DEFAULT_SOURCE_TYPE",
    "DESCRIPTION_MAX_LENGTH", "ESCAPED_SLASHES_ACTIONS", "EXPORTED_SERVICES_NAME", "EXPOSE_PROTOCOLS",
    "FAILOVER_POLICY_MODES", "HTTP_METHODS", "INTENTION_ACTIONS", "KIND_EXPORTED_SERVICES", "KIND_MESH",
    "KIND_PROXY_DEFAULTS", "KIND_SERVICE_DEFAULTS", "KIND_SERVICE_INTENTIONS", "KINDS", "LOCALITY_MODES",
    "MESH_GATEWAY_MODES", "MESH_NAME", "META_KEY_MAX_LENGTH", "META_MAX_PAIRS", "META_VALUE_MAX_LENGTH",
    "MUTUAL_TLS_MODES", "PROTOCOLS", "PROXY_DEFAULTS_NAME", "PROXY_MODES", "STORE_OWNED_FIELDS",
    "TLS_VERSIONS", "TLS_VERSIONS_WITH_CIPHER_SUITES", "UNDERSCORE_HEADER_ACTIONS", "WILDCARD",
    "ConfigEntryError", "config_entry_key", "content_hash", "entry_key", "is_same_content", "normalize",
    "precedence", "validate", "without_store_fields",
]

"""The Connect CA (reference connect-data.md §C), one concept per module:

- `config`   Consul's CA configuration: parsing, limits, how it is stored.
- `identity` cluster id, SPIFFE trust domain and signing URI, Consul's key ids.
- `roots`    the replicated `CAState` record as writers edit it, and Consul's roots JSON.
- `signing`  the certificates: the primary's root, a secondary's intermediate, rotation, pruning.
- `leader`   what the two leader routines share: the CAS write of the record, the retry schedule.
- `primary`  the primary's leader routine: bootstrap, then hourly pruning.
- `secondary` the secondary's leader routine: the root watch that keeps its intermediate current.

X.509 pieces shared with the server-RPC TLS generator live in `meshfed.rpc.x509`. This package
re-exports the pure API so callers write `ca.generate_root(...)`; the leader routines are imported
on their own, since they pull in the replication machinery.
"""

from meshfed.server.ca.config import (
    DEFAULT_KEY_BITS,
    INTERMEDIATE_TTL_LEAF_MULTIPLE,
    MAX_LEAF_CERT_TTL_NS,
    MIN_INTERMEDIATE_CERT_TTL_NS,
    MIN_LEAF_CERT_TTL_NS,
    PROVIDER_CONSUL,
    CAConfig,
    CAConfigError,
    config_from_request,
    config_record,
    config_view,
    requires_new_root,
    stored_config,
    validate_config,
)
from meshfed.server.ca.identity import TRUST_DOMAIN_SUFFIX, new_cluster_id, trust_domain
from meshfed.server.ca.roots import (
    INDEX_FIELDS,
    MAX_CAS_ATTEMPTS,
    PRIVATE_ROOT_FIELDS,
    PUBLIC_ROOT_FIELDS,
    CANotInitializedError,
    Clock,
    active_root,
    is_initialized,
    keep_create_indexes,
    next_serial,
    pem_chain,
    public_view,
    roots_for_write,
    roots_response,
    served_roots,
    utc_now,
)
from meshfed.server.ca.signing import (
    INTERMEDIATE_BACKDATE,
    ROOT_NAME,
    ROTATED_ROOT_RETENTION_LEAF_TTLS,
    generate_root,
    make_intermediate_csr,
    prune,
    rotate,
    secondary_root,
    sign_intermediate,
)

__all__ = [
    "DEFAULT_KEY_BITS",
    "INDEX_FIELDS",
    "INTERMEDIATE_BACKDATE",
    "INTERMEDIATE_TTL_LEAF_MULTIPLE",
    "MAX_CAS_ATTEMPTS",
    "MAX_LEAF_CERT_TTL_NS",
    "MIN_INTERMEDIATE_CERT_TTL_NS",
    "MIN_LEAF_CERT_TTL_NS",
    "PRIVATE_ROOT_FIELDS",
    "PROVIDER_CONSUL",
    "PUBLIC_ROOT_FIELDS",
    "ROOT_NAME",
    "ROTATED_ROOT_RETENTION_LEAF_TTLS",
    "TRUST_DOMAIN_SUFFIX",
    "CAConfig",
    "CAConfigError",
    "CANotInitializedError",
    "Clock",
    "active_root",
    "config_from_request",
    "config_record",
    "config_view",
    "generate_root",
    "is_initialized",
    "keep_create_indexes",
    "make_intermediate_csr",
    "new_cluster_id",
    "next_serial",
    "pem_chain",
    "prune",
    "public_view",
    "requires_new_root",
    "roots_for_write",
    "roots_response",
    "rotate",
    "secondary_root",
    "served_roots",
    "sign_intermediate",
    "stored_config",
    "trust_domain",
    "utc_now",
    "validate_config",
]

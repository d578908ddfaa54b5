"""The Connect CA's configuration: Consul's `/v1/connect/ca/configuration` shape, its limits, and how
it is stored in the `CAState` record.

Durations keep the operator's Go spelling ("72h") so a GET echoes what was PUT; they are parsed
where used. Every refusal is a `CAConfigError` naming Consul's key, so the HTTP 400 points at it.
Only a different key (type or size) needs a new root (`requires_new_root`); the routines that act
on that live in `signing.py` and the leader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshfed.fsm.consul_formats.durations import NANOSECONDS_PER_SECOND, format_duration_ns, parse_duration_ns
from meshfed.fsm.records import CAState
from meshfed.rpc.x509 import EC_CURVES, RSA_KEY_BITS

PROVIDER_CONSUL = "consul"
# Limits Consul enforces on a CA configuration; the reasons are in `validate_config`.
MIN_LEAF_CERT_TTL_NS = 3600 * NANOSECONDS_PER_SECOND
MAX_LEAF_CERT_TTL_NS = 8760 * 3600 * NANOSECONDS_PER_SECOND
MIN_INTERMEDIATE_CERT_TTL_NS = 3 * 3600 * NANOSECONDS_PER_SECOND
INTERMEDIATE_TTL_LEAF_MULTIPLE = 3
DEFAULT_KEY_BITS = {"ec": 256, "rsa": 2048}


class CAConfigError(ValueError):
    """A CA configuration value was refused; `field` is Consul's key so the 400 names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CAConfig:
    """The CA configuration as stored; durations keep the user's Go spelling so GET echoes it."""

    provider: str = PROVIDER_CONSUL
    cluster_id: str = ""
    leaf_cert_ttl: str = "72h"
    intermediate_cert_ttl: str = "8760h"
    root_cert_ttl: str = "87600h"
    private_key_type: str = "ec"
    private_key_bits: int = 256
    rotation_period: str = "2160h"
    # Leaf signing limits (the leader's CSR gate): a rate, or with a concurrency cap set, that cap.
    csr_max_per_second: float = 50.0
    csr_max_concurrent: int = 0

    @property
    def leaf_cert_ttl_seconds(self) -> float:
        return duration_ns("LeafCertTTL", self.leaf_cert_ttl) / NANOSECONDS_PER_SECOND

    @property
    def intermediate_cert_ttl_seconds(self) -> float:
        return duration_ns("IntermediateCertTTL", self.intermediate_cert_ttl) / NANOSECONDS_PER_SECOND

    @property
    def root_cert_ttl_seconds(self) -> float:
        return duration_ns("RootCertTTL", self.root_cert_ttl) / NANOSECONDS_PER_SECOND


_CONFIG_KEYS = {  # normalised key (lower case, no '_') -> (Consul's key, CAConfig attribute)
    "leafcertttl": ("LeafCertTTL", "leaf_cert_ttl"),
    "intermediatecertttl": ("IntermediateCertTTL", "intermediate_cert_ttl"),
    "rootcertttl": ("RootCertTTL", "root_cert_ttl"),
    "privatekeytype": ("PrivateKeyType", "private_key_type"),
    "privatekeybits": ("PrivateKeyBits", "private_key_bits"),
    "rotationperiod": ("RotationPeriod", "rotation_period"),
    "csrmaxpersecond": ("CSRMaxPerSecond", "csr_max_per_second"),
    "csrmaxconcurrent": ("CSRMaxConcurrent", "csr_max_concurrent"),
}
_IGNORED_CONFIG_KEYS: set[str] = set()


def config_view(config: CAConfig) -> dict[str, Any]:
    """GET /v1/connect/ca/configuration (without the indexes, which the store adds). Like Consul, the
    cluster id is not part of it: it is served only inside TrustDomain."""
    return {
        "Provider": config.provider,
        "Config": {
            "LeafCertTTL": config.leaf_cert_ttl,
            "IntermediateCertTTL": config.intermediate_cert_ttl,
            "RootCertTTL": config.root_cert_ttl,
            "PrivateKeyType": config.private_key_type,
            "PrivateKeyBits": config.private_key_bits,
            "RotationPeriod": config.rotation_period,
            "CSRMaxPerSecond": config.csr_max_per_second,
            "CSRMaxConcurrent": config.csr_max_concurrent,
        },
        "State": None,
        "ForceWithoutCrossSigning": False,
    }


def config_from_request(body: Mapping[str, Any], current: CAConfig) -> CAConfig:
    """PUT /v1/connect/ca/configuration: keys case-insensitive (Config keys snake_case too); keys
    left out take their defaults, as in Consul, not the current values. The cluster id is kept.

    Raises:
        CAConfigError: naming Consul's key, for any refused value.
    """
    if not isinstance(body, Mapping):
        raise CAConfigError("", "request body must be a JSON object")
    top = {str(key).lower(): value for key, value in body.items()}
    provider = top.get("provider")
    if provider != PROVIDER_CONSUL:
        raise CAConfigError("Provider", f"{provider!r} is not supported; accepted: {PROVIDER_CONSUL!r}")
    if top.get("state"):
        raise CAConfigError("State", "provider state is read-only; omit it")
    raw = top.get("config")
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise CAConfigError("Config", "must be an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        normalised = str(key).replace("_", "").lower()
        if normalised in _IGNORED_CONFIG_KEYS:
            continue
        if normalised not in _CONFIG_KEYS:
            accepted = ", ".join(consul_key for consul_key, _ in _CONFIG_KEYS.values())
            raise CAConfigError(
                f"Config.{key}", f"not supported by meshfed's built-in CA; accepted: {accepted}"
            )
        consul_key, attribute = _CONFIG_KEYS[normalised]
        values[attribute] = _config_value(consul_key, value)
    if "private_key_type" in values and "private_key_bits" not in values:
        values["private_key_bits"] = DEFAULT_KEY_BITS.get(values["private_key_type"], 0)
    config = CAConfig(cluster_id=current.cluster_id, **values)
    validate_config(config)
    return config


def _config_value(consul_key: str, value: Any) -> Any:
    if consul_key in ("CSRMaxPerSecond", "CSRMaxConcurrent"):
        number = float(value) if isinstance(value, str) and _is_number(value) else value
        if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
            raise CAConfigError(consul_key, f"{value!r} must be a number >= 0 (0 = no limit)")
        if consul_key == "CSRMaxConcurrent":
            if not float(number).is_integer():
                raise CAConfigError(consul_key, f"{value!r} must be a whole number")
            return int(number)
        return float(number)
    if consul_key == "PrivateKeyBits":
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CAConfigError(consul_key, f"{value!r} is not a whole number of bits")
        return value
    if not isinstance(value, str):
        raise CAConfigError(consul_key, f'{value!r} must be a string (a duration like "72h" or a key type)')
    if consul_key != "PrivateKeyType":
        duration_ns(consul_key, value)
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def duration_ns(field: str, text: str) -> int:
    """A configured duration in nanoseconds; a refusal names Consul's key."""
    try:
        return parse_duration_ns(text)
    except ValueError as err:
        raise CAConfigError(field, str(err)) from None


def check_key(key_type: str, key_bits: int) -> None:
    """Refuse a key type or size Consul's built-in provider would not make, naming the field."""
    if key_type == "ec":
        if key_bits not in EC_CURVES:
            raise CAConfigError(
                "PrivateKeyBits", f"{key_bits!r} is not valid for ec keys; accepted: 224, 256, 384, 521"
            )
    elif key_type == "rsa":
        if key_bits not in RSA_KEY_BITS:
            raise CAConfigError(
                "PrivateKeyBits", f"{key_bits!r} is not valid for rsa keys; accepted: 2048, 4096"
            )
    else:
        raise CAConfigError("PrivateKeyType", f"{key_type!r} is not supported; accepted: 'ec', 'rsa'")


def validate_config(config: CAConfig) -> None:
    """Consul's limits on a CA configuration; the first violation is raised as `CAConfigError`."""
    if config.provider != PROVIDER_CONSUL:
        raise CAConfigError(
            "Provider", f"{config.provider!r} is not supported; accepted: {PROVIDER_CONSUL!r}"
        )
    leaf = duration_ns("LeafCertTTL", config.leaf_cert_ttl)
    intermediate = duration_ns("IntermediateCertTTL", config.intermediate_cert_ttl)
    root = duration_ns("RootCertTTL", config.root_cert_ttl)
    duration_ns("RotationPeriod", config.rotation_period)
    if leaf < MIN_LEAF_CERT_TTL_NS or leaf > MAX_LEAF_CERT_TTL_NS:
        raise CAConfigError(
            "LeafCertTTL",
            f"{config.leaf_cert_ttl!r} is out of range; accepted: {format_duration_ns(MIN_LEAF_CERT_TTL_NS)} "
            f"to {format_duration_ns(MAX_LEAF_CERT_TTL_NS)}",
        )
    # Secondaries check their intermediate hourly and renew at half-life, and proxies receive a new
    # intermediate only with a new leaf: both need the intermediate to outlive several of those.
    if intermediate < MIN_INTERMEDIATE_CERT_TTL_NS:
        raise CAConfigError(
            "IntermediateCertTTL",
            f"{config.intermediate_cert_ttl!r} is too short; must be at least "
            f"{format_duration_ns(MIN_INTERMEDIATE_CERT_TTL_NS)}",
        )
    if intermediate < INTERMEDIATE_TTL_LEAF_MULTIPLE * leaf:
        raise CAConfigError(
            "IntermediateCertTTL",
            f"{config.intermediate_cert_ttl!r} is too short; must be at least {INTERMEDIATE_TTL_LEAF_MULTIPLE} x "
            f"LeafCertTTL ({format_duration_ns(INTERMEDIATE_TTL_LEAF_MULTIPLE * leaf)})",
        )
    if root < intermediate:
        raise CAConfigError(
            "RootCertTTL",
            f"{config.root_cert_ttl!r} is shorter than IntermediateCertTTL ({config.intermediate_cert_ttl}); "
            "a root must outlive the intermediates it signs",
        )
    check_key(config.private_key_type, config.private_key_bits)


def requires_new_root(old: CAConfig, new: CAConfig) -> bool:
    """Whether a configuration change needs a new root (and so a rotation). Like Consul's built-in
    provider, only a different key does; TTL changes apply to certificates issued from then on."""
    return (old.provider, old.private_key_type, old.private_key_bits) != (
        new.provider,
        new.private_key_type,
        new.private_key_bits,
    )


# --------------------------------------------------------------------------------------------------
# The stored record


def config_record(config: CAConfig) -> dict[str, Any]:
    """How a configuration is stored in `CAState.config`: Consul's request shape, so reading it
    back goes through the same parser and validation as a PUT."""
    view = config_view(config)
    return {"Provider": view["Provider"], "Config": dict(view["Config"])}


def stored_config(state: CAState | None) -> CAConfig:
    """The CA configuration of a stored record; defaults when none was stored.

    Raises:
        CAConfigError: the stored record holds a configuration this version refuses.
    """
    cluster_id = state.cluster_id if state is not None else ""
    if state is None or not state.config:
        return CAConfig(cluster_id=cluster_id)
    return config_from_request(state.config, CAConfig(cluster_id=cluster_id))

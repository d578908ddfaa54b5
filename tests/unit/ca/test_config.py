"""The Connect CA configuration (reference connect-data.md §C.1): Consul's shape, parsing, limits."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.server.ca.config import (
    CAConfig,
    CAConfigError,
    config_from_request,
    config_view,
    requires_new_root,
    validate_config,
)

from .samples import CLUSTER_ID, HOUR


def test_config_view_matches_consuls_shape() -> None:
    assert config_view(CAConfig(cluster_id=CLUSTER_ID)) == {
        "Provider": "consul",
        "Config": {
            "LeafCertTTL": "72h",
            "IntermediateCertTTL": "8760h",
            "RootCertTTL": "87600h",
            "PrivateKeyType": "ec",
            "PrivateKeyBits": 256,
            "RotationPeriod": "2160h",
            "CSRMaxPerSecond": 50.0,
            "CSRMaxConcurrent": 0,
        },
        "State": None,
        "ForceWithoutCrossSigning": False,
    }


def test_default_config_is_valid_and_exposes_seconds() -> None:
    config = CAConfig()
    validate_config(config)
    assert config.leaf_cert_ttl_seconds == 72 * HOUR
    assert config.intermediate_cert_ttl_seconds == 8760 * HOUR
    assert config.root_cert_ttl_seconds == 87600 * HOUR


def test_config_round_trips_through_view_and_request() -> None:
    config = CAConfig(
        cluster_id=CLUSTER_ID, leaf_cert_ttl="24h", private_key_type="rsa", private_key_bits=4096
    )
    assert config_from_request(config_view(config), CAConfig(cluster_id=CLUSTER_ID)) == config


def test_config_request_keys_are_case_insensitive_and_may_be_snake_case() -> None:
    body = {
        "provider": "consul",
        "config": {
            "leaf_cert_ttl": "12h",
            "INTERMEDIATECERTTTL": "48h",
            "PrivateKeyBits": "384",
            "CSRMaxPerSecond": 5,
        },
        "ForceWithoutCrossSigning": True,
        "CreateIndex": 5,
    }
    config = config_from_request(body, CAConfig(cluster_id=CLUSTER_ID))
    assert (config.leaf_cert_ttl, config.intermediate_cert_ttl, config.private_key_bits) == (
        "12h",
        "48h",
        384,
    )
    assert config.cluster_id == CLUSTER_ID
    assert config.csr_max_per_second == 5.0


@pytest.mark.parametrize("key,value", [("CSRMaxPerSecond", -1), ("CSRMaxConcurrent", 1.5), ("CSRMaxPerSecond", "x"),
                                       ("CSRMaxConcurrent", True)])
def test_csr_limits_refuse_what_is_not_a_count_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(CAConfigError, match=key):
        config_from_request({"Provider": "consul", "Config": {key: value}}, CAConfig(cluster_id=CLUSTER_ID))


def test_config_request_omitted_keys_take_defaults_not_current_values() -> None:
    current = CAConfig(cluster_id=CLUSTER_ID, leaf_cert_ttl="24h", rotation_period="1h")
    config = config_from_request({"Provider": "consul", "Config": {"RootCertTTL": "100000h"}}, current)
    assert config == CAConfig(cluster_id=CLUSTER_ID, root_cert_ttl="100000h")
    rsa_config = config_from_request({"Provider": "consul", "Config": {"PrivateKeyType": "rsa"}}, current)
    assert (rsa_config.private_key_type, rsa_config.private_key_bits) == ("rsa", 2048)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"Provider": "vault", "Config": {}}, "Provider", "vault"),
        ({"Config": {}}, "Provider", "None"),
        ({"Provider": "consul", "Config": []}, "Config", "object"),
        ({"Provider": "consul", "State": {"k": "v"}}, "State", "read-only"),
        ({"Provider": "consul", "Config": {"LeafCertTTL": "3 days"}}, "LeafCertTTL", "invalid duration"),
        ({"Provider": "consul", "Config": {"LeafCertTTL": 3600}}, "LeafCertTTL", "string"),
        ({"Provider": "consul", "Config": {"LeafCertTTL": "59m"}}, "LeafCertTTL", "1h0m0s"),
        ({"Provider": "consul", "Config": {"LeafCertTTL": "8761h"}}, "LeafCertTTL", "8760h0m0s"),
        (
            {"Provider": "consul", "Config": {"LeafCertTTL": "1h", "IntermediateCertTTL": "2h"}},
            "IntermediateCertTTL",
            "3h0m0s",
        ),
        (
            {"Provider": "consul", "Config": {"LeafCertTTL": "72h", "IntermediateCertTTL": "200h"}},
            "IntermediateCertTTL",
            "216h0m0s",
        ),
        ({"Provider": "consul", "Config": {"RootCertTTL": "8000h"}}, "RootCertTTL", "8760h"),
        ({"Provider": "consul", "Config": {"PrivateKeyType": "dsa"}}, "PrivateKeyType", "'ec', 'rsa'"),
        ({"Provider": "consul", "Config": {"PrivateKeyBits": 512}}, "PrivateKeyBits", "224, 256, 384, 521"),
        (
            {"Provider": "consul", "Config": {"PrivateKeyType": "rsa", "PrivateKeyBits": 1024}},
            "PrivateKeyBits",
            "2048, 4096",
        ),
        ({"Provider": "consul", "Config": {"PrivateKeyBits": True}}, "PrivateKeyBits", "bits"),
        ({"Provider": "consul", "Config": {"RotationPeriod": "-1h"}}, "RotationPeriod", "negative"),
        ({"Provider": "consul", "Config": {"PrivateKey": "-----BEGIN"}}, "Config.PrivateKey", "LeafCertTTL"),
    ],
)
def test_config_request_errors_name_the_field(body: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(CAConfigError) as err:
        config_from_request(body, CAConfig(cluster_id=CLUSTER_ID))
    assert err.value.field == field
    assert fragment in err.value.message
    assert str(err.value) == f"{field}: {err.value.message}"
    assert isinstance(err.value, ValueError)


def test_config_request_body_must_be_an_object() -> None:
    with pytest.raises(CAConfigError) as err:
        config_from_request(["Provider"], CAConfig())  # type: ignore[arg-type]
    assert err.value.field == "" and str(err.value) == err.value.message


def test_only_a_key_change_requires_a_new_root() -> None:
    base = CAConfig(cluster_id=CLUSTER_ID)
    assert not requires_new_root(
        base, CAConfig(cluster_id=CLUSTER_ID, leaf_cert_ttl="24h", root_cert_ttl="90000h")
    )
    assert requires_new_root(base, CAConfig(cluster_id=CLUSTER_ID, private_key_bits=384))
    assert requires_new_root(
        base, CAConfig(cluster_id=CLUSTER_ID, private_key_type="rsa", private_key_bits=2048)
    )

"""Fixtures of the Connect CA unit tests: one root and one signed intermediate per module, since
key generation is the slow part."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.server.ca.config import CAConfig
from meshfed.server.ca.signing import generate_root, make_intermediate_csr, sign_intermediate

from .samples import CLUSTER_ID, HOUR, NOW


@pytest.fixture(scope="module")
def root() -> dict[str, Any]:
    return generate_root(CLUSTER_ID, NOW, CAConfig(cluster_id=CLUSTER_ID), serial=7)


@pytest.fixture(scope="module")
def intermediate(root: dict[str, Any]) -> tuple[str, str, str]:
    """(csr_pem, key_pem, signed intermediate pem) for a secondary dc2."""
    csr_pem, key_pem = make_intermediate_csr(CLUSTER_ID, "dc2")
    return csr_pem, key_pem, sign_intermediate(root, csr_pem, NOW, 8760 * HOUR)

"""The Connect CA's identity (reference connect-data.md §C): cluster ids and SPIFFE trust domains."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.server.ca.identity import new_cluster_id, trust_domain

from .samples import CLUSTER_ID


def test_new_cluster_id_is_a_fresh_uuid4() -> None:
    first, second = new_cluster_id(), new_cluster_id()
    assert uuid.UUID(first).version == 4
    assert str(uuid.UUID(first)) == first
    assert first != second


def test_trust_domain_is_lower_case_and_stable_for_a_cluster_id() -> None:
    assert trust_domain(CLUSTER_ID) == f"{CLUSTER_ID}.consul"
    assert trust_domain(CLUSTER_ID.upper()) == f"{CLUSTER_ID}.consul"
    assert trust_domain(CLUSTER_ID) == trust_domain(CLUSTER_ID)


@pytest.mark.parametrize("bad", ["", "a/b", "x.consul", "spiffe://x", " id"])
def test_trust_domain_refuses_ids_that_would_break_the_spiffe_uri(bad: str) -> None:
    with pytest.raises(ValueError, match="cluster id"):
        trust_domain(bad)


@settings(max_examples=50, deadline=None)
@given(st.uuids())
def test_trust_domain_of_any_uuid_is_its_lower_case_form(cluster: uuid.UUID) -> None:
    assert trust_domain(str(cluster).upper()) == f"{cluster}.consul"

"""fsm/consul_formats: the shared readings of Consul's text conventions, pinned where callers differ."""

from __future__ import annotations

import datetime

import pytest

from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.consul_formats.meta import META_MAX_PAIRS, meta_problems
from meshfed.fsm.consul_formats.timestamps import format_rfc3339, is_rfc3339, parse_rfc3339


def test_plus_sign_is_go_syntax_but_refused_for_request_bodies() -> None:
    assert parse_duration("+5s") == 5.0
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("+5s", allow_plus_sign=False)


def test_durations_take_ascii_digits_only_as_go_does() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("\u0663s")  # Arabic-Indic three


def test_rfc3339_whole_seconds_and_microseconds() -> None:
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    assert format_rfc3339(moment) == "2026-01-02T03:04:05Z"
    assert format_rfc3339(moment, microseconds=True) == "2026-01-02T03:04:05.000006Z"
    assert format_rfc3339(moment.replace(tzinfo=None)) == "2026-01-02T03:04:05Z"  # naive is UTC


def test_rfc3339_parse_accepts_z_offsets_and_naive() -> None:
    assert parse_rfc3339("2026-01-02T03:04:05Z") == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert parse_rfc3339("2026-01-02T05:04:05+02:00") == parse_rfc3339("2026-01-02T03:04:05Z")
    assert parse_rfc3339("2026-01-02T03:04:05").tzinfo is not None
    with pytest.raises(ValueError):
        parse_rfc3339("yesterday")


def test_rfc3339_shape_check() -> None:
    assert is_rfc3339("2026-01-02T03:04:05.123Z")
    assert is_rfc3339("2026-01-02T03:04:05-07:00")
    assert not is_rfc3339("2026-01-02 03:04:05Z")


def test_lookup_prefers_exact_spelling_then_any_case() -> None:
    assert lookup({"tagged_addresses": 1, "TaggedAddresses": 2}, "TaggedAddresses", "tagged_addresses") == 2
    assert lookup({"destinationname": "web"}, "DestinationName") == "web"
    assert lookup({}, "Name") is None


def test_meta_problems_in_map_order_or_sorted() -> None:
    meta = {"b" * 129: "x", "a": "v" * 513}
    assert meta_problems(meta) == [
        f'key "{"b" * 32}..." exceeds maximum length 128',
        'value for key "a" exceeds maximum length 512',
    ]
    assert meta_problems(meta, sorted_keys=True)[0] == 'value for key "a" exceeds maximum length 512'
    too_many = {str(i): "" for i in range(META_MAX_PAIRS + 1)}
    assert meta_problems(too_many) == [f"exceeds maximum element count 64 (got {META_MAX_PAIRS + 1})"]

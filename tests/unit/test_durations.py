"""Go duration syntax, as Consul users write it in config files and in ``?wait=`` query strings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshfed.fsm.consul_formats.durations import (
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("+0", 0.0),
        ("0s", 0.0),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("72h", 259200.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("+5s", 5.0),
        ("1h2m3s", 3723.0),
        ("1.5h", 5400.0),
        ("2h45m", 9900.0),
        ("1us", 1e-6),
        ("1\u00b5s", 1e-6),
        ("1\u03bcs", 1e-6),
        ("3ns", 3e-9),
        ("1s500ms", 1.5),
        ("10m10m", 1200.0),
    ],
)
def test_parse_accepts_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


def test_parse_is_exact_in_nanoseconds_and_truncates_like_go() -> None:
    assert parse_duration_ns("1.000000001s") == 1_000_000_001
    assert parse_duration_ns("1.0000000019s") == 1_000_000_001
    assert parse_duration_ns("0.1s") + parse_duration_ns("0.2s") == parse_duration_ns("0.3s")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("+", "empty"),
        ("10", "missing unit"),
        ("1.5", "missing unit"),
        ("1s2", "missing unit"),
        ("-5s", "negative"),
        ("-0", "negative"),
        ("5 s", "unknown unit"),
        ("1x", "unknown unit"),
        ("1d", "unknown unit"),
        ("1S", "unknown unit"),
        ("s", "expected a number"),
        (".s", "expected a number"),
        ("1e3s", "unknown unit"),
        (" 1s", "expected a number"),
        ("999999999999h", "too long"),
    ],
)
def test_parse_rejects_with_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid duration") as info:
        parse_duration(text)
    assert why in str(info.value)
    assert repr(text) in str(info.value)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match=r"^invalid duration"):
        parse_duration(10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (0.0015, "1.5ms"),
        (1e-6, "1\u00b5s"),
        (1.5e-6, "1.5\u00b5s"),
        (3e-9, "3ns"),
        (1, "1s"),
        (1.5, "1.5s"),
        (90, "1m30s"),
        (300, "5m0s"),
        (3600, "1h0m0s"),
        (3661.5, "1h1m1.5s"),
        (259200, "72h0m0s"),
        (-1.5, "-1.5s"),
    ],
)
def test_format_matches_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_format_refuses_non_finite(bad: float) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_round_trip_is_exact_in_nanoseconds(nanoseconds: int) -> None:
    assert parse_duration_ns(format_duration_ns(nanoseconds)) == nanoseconds


@given(st.integers(min_value=0, max_value=10**15))
def test_round_trip_through_seconds(nanoseconds: int) -> None:
    seconds = nanoseconds / 1_000_000_000
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False))
def test_format_then_parse_stays_within_half_a_nanosecond(seconds: float) -> None:
    text = format_duration(seconds)
    assert abs(parse_duration(text) - seconds) <= 0.5e-9 + seconds * 1e-15
    assert format_duration(parse_duration(text)) == text


@given(
    st.integers(0, 500),
    st.integers(0, 500),
    st.integers(0, 500),
    st.integers(0, 999),
)
def test_parse_adds_up_components(hours: int, minutes: int, seconds: int, millis: int) -> None:
    text = f"{hours}h{minutes}m{seconds}s{millis}ms"
    expected = ((hours * 60 + minutes) * 60 + seconds) * 10**9 + millis * 10**6
    assert parse_duration_ns(text) == expected

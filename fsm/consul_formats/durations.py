"""Go-style duration strings ("10s", "1m30s", "250ms"), parsed and printed the way Go does.

Consul's users write durations in config files (``primary_gateways_interval = "30s"``) and in
query strings (``?wait=10s``) in Go's ``time.ParseDuration`` syntax, so meshfed speaks exactly that
syntax rather than inventing its own. Both directions go through an integer number of nanoseconds,
as Go's ``time.Duration`` does, which makes ``parse_duration(format_duration(x))`` exact to the
nanosecond instead of drifting with float arithmetic.

Negative durations are refused: every duration meshfed reads is a timeout or an interval, where a
negative value is always a mistake. The one implementation for the whole tree: config files, query
strings, catalog check bodies and config entries all parse durations here.
"""

from __future__ import annotations

import math
from fractions import Fraction

NANOSECONDS_PER_SECOND = 1_000_000_000

# Go accepts both the micro sign (U+00B5) and the Greek small letter mu (U+03BC) for microseconds.
_UNIT_NANOSECONDS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": NANOSECONDS_PER_SECOND,
    "m": 60 * NANOSECONDS_PER_SECOND,
    "h": 3600 * NANOSECONDS_PER_SECOND,
}

# Go's time.Duration is an int64 of nanoseconds; anything longer (about 292 years) overflows there.
MAX_NANOSECONDS = 2**63 - 1

# Go reads ASCII digits only; str.isdigit() would also take "²" and "٣".
_DIGITS = frozenset("0123456789")

_ACCEPTED = 'a number with a unit (ns, us, ms, s, m, h), e.g. "10s", "1m30s", "250ms", or "0"'


def _invalid(text: object, why: str) -> ValueError:
    return ValueError(f"invalid duration {text!r}: {why}; accepted: {_ACCEPTED}")


def parse_duration(text: str, *, allow_plus_sign: bool = True) -> float:
    """Parse a Go duration string into seconds.

    Args:
        text: e.g. ``"10s"``, ``"1m30s"``, ``"1.5h"``, ``".5s"``, ``"0"``.
        allow_plus_sign: Go accepts a leading ``+``; request bodies (catalog checks, config entries)
            have always refused it, and keep doing so.

    Returns:
        The duration in seconds, truncated to whole nanoseconds like Go.

    Raises:
        ValueError: starting with "invalid duration", for anything Go would reject, and for negative
            durations.
    """
    return parse_duration_ns(text, allow_plus_sign=allow_plus_sign) / NANOSECONDS_PER_SECOND


def parse_duration_ns(text: str, *, allow_plus_sign: bool = True) -> int:
    """Parse a Go duration string into an exact integer number of nanoseconds (see ``parse_duration``)."""
    if not isinstance(text, str):
        raise _invalid(text, "expected a string")
    rest = text
    if rest[:1] == "-":
        raise _invalid(text, "negative durations are not accepted")
    if rest[:1] == "+" and allow_plus_sign:
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise _invalid(text, "empty")
    total = Fraction(0)
    while rest:
        number, rest = _take_number(text, rest)
        unit_end = 0
        while unit_end < len(rest) and not (rest[unit_end] in _DIGITS or rest[unit_end] == "."):
            unit_end += 1
        unit, rest = rest[:unit_end], rest[unit_end:]
        if not unit:
            raise _invalid(text, "missing unit")
        if unit not in _UNIT_NANOSECONDS:
            raise _invalid(text, f"unknown unit {unit!r}")
        total += number * _UNIT_NANOSECONDS[unit]
    nanoseconds = math.floor(total)
    if nanoseconds > MAX_NANOSECONDS:
        raise _invalid(text, "too long (more than about 292 years)")
    return nanoseconds


def _take_number(text: str, rest: str) -> tuple[Fraction, str]:
    """Split a leading decimal number (``12``, ``1.5``, ``.5``, ``5.``) off ``rest``, exactly."""
    end = 0
    while end < len(rest) and rest[end] in _DIGITS:
        end += 1
    whole = rest[:end]
    fraction = ""
    if end < len(rest) and rest[end] == ".":
        start = end + 1
        end = start
        while end < len(rest) and rest[end] in _DIGITS:
            end += 1
        fraction = rest[start:end]
    if not whole and not fraction:
        raise _invalid(text, f"expected a number at {rest!r}")
    value = Fraction(int(whole or "0"))
    if fraction:
        value += Fraction(int(fraction), 10 ** len(fraction))
    return value, rest[end:]


def format_duration(seconds: float) -> str:
    """Print seconds the way Go's ``Duration.String`` does: ``"0s"``, ``"250ms"``, ``"1m30s"``, ``"72h0m0s"``.

    The value is rounded to the nearest nanosecond first, so the output parses back to the same
    nanosecond count. Negative values get a leading ``-`` (for display only; they do not parse back).

    Raises:
        ValueError: for NaN or infinity, which have no duration spelling.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format {seconds!r} as a duration")
    return format_duration_ns(round(Fraction(seconds) * NANOSECONDS_PER_SECOND))


def format_duration_ns(nanoseconds: int) -> str:
    """Print an integer nanosecond count in Go's ``Duration.String`` form."""
    if nanoseconds < 0:
        return "-" + format_duration_ns(-nanoseconds)
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 1_000:
        return f"{nanoseconds}ns"
    if nanoseconds < 1_000_000:
        return _decimal(nanoseconds, 3) + "\u00b5s"
    if nanoseconds < NANOSECONDS_PER_SECOND:
        return _decimal(nanoseconds, 6) + "ms"
    hours, rest = divmod(nanoseconds, _UNIT_NANOSECONDS["h"])
    minutes, rest = divmod(rest, _UNIT_NANOSECONDS["m"])
    text = _decimal(rest, 9) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _decimal(value: int, digits: int) -> str:
    """``value / 10**digits`` as a decimal without trailing zeros (``1500, 3`` -> ``"1.5"``)."""
    whole, fraction = divmod(value, 10**digits)
    if not fraction:
        return str(whole)
    return f"{whole}.{str(fraction).rjust(digits, '0').rstrip('0')}"

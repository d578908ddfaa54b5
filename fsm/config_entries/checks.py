"""Value checks that several kinds' validators share, each failing with Consul's message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshfed.fsm.config_entries.errors import fail, quoted
from meshfed.fsm.config_entries.schema import WILDCARD
from meshfed.fsm.consul_formats.meta import meta_problems


def check_choice(value: Any, allowed: tuple[str, ...], field: str, what: str) -> None:
    if value not in allowed:
        fail(field, f'invalid {what} "{value}": must be one of {quoted(allowed)}')


def check_range(value: int, low: int, high: int | None, field: str) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"greater than or equal to {low}"
        fail(field, f"must be {bound}, got {value}")


def check_meta(meta: Mapping[str, str], field: str) -> None:
    problems = meta_problems(meta)
    if problems:
        fail(field, problems[0])


def check_exact_or_wildcard(value: str, field: str) -> None:
    if value != WILDCARD and WILDCARD in value:
        fail(field, "wildcard character '*' cannot be used with partial values")

"""Consul's limits on a Meta map (`structs.ValidateMetadata`), with its messages.

Config entries, legacy intentions and intention sources' LegacyMeta all carry a Meta map under the
same limits; the callers differ only in whether they stop at the first problem or collect them all.
"""

from __future__ import annotations

from collections.abc import Mapping

META_MAX_PAIRS = 64
META_KEY_MAX_LENGTH = 128
META_VALUE_MAX_LENGTH = 512


def meta_problems(meta: Mapping[str, str], *, sorted_keys: bool = False) -> list[str]:
    """Every limit `meta` breaks, as messages, in the order Consul reports them.

    Args:
        meta: the map to check.
        sorted_keys: visit keys in sorted order (the legacy intention API's multi-error lists them
            that way) instead of the map's own order.
    """
    problems: list[str] = []
    if len(meta) > META_MAX_PAIRS:
        problems.append(f"exceeds maximum element count {META_MAX_PAIRS} (got {len(meta)})")
    for key in sorted(meta) if sorted_keys else meta:
        if len(key) > META_KEY_MAX_LENGTH:
            problems.append(f'key "{key[:32]}..." exceeds maximum length {META_KEY_MAX_LENGTH}')
        if len(meta[key]) > META_VALUE_MAX_LENGTH:
            problems.append(f'value for key "{key}" exceeds maximum length {META_VALUE_MAX_LENGTH}')
    return problems

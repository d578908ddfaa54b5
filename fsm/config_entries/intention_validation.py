"""Validation of service-intentions entries: sources, L7 permissions, JWT rules, legacy fields.

Two rule sets share one walk (connect-data §A.9): an ordinary write refuses the Legacy* fields,
a write through the legacy ID API requires them and refuses what that API cannot express (Peer,
Permissions, entry Meta).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshfed.fsm.config_entries.checks import check_exact_or_wildcard, check_meta
from meshfed.fsm.config_entries.errors import fail
from meshfed.fsm.config_entries.schema import (
    DEFAULT_SOURCE_TYPE,
    DESCRIPTION_MAX_LENGTH,
    HTTP_METHODS,
    INTENTION_ACTIONS,
    WILDCARD,
)
from meshfed.fsm.consul_formats.timestamps import is_rfc3339


def validate_service_intentions(entry: Mapping[str, Any], legacy: bool) -> None:
    name = entry["Name"]
    if not name:
        fail("Name", "Name is required")
    check_exact_or_wildcard(name, "Name")
    if "JWT" in entry:
        _check_jwt(entry["JWT"], "JWT")
    if legacy and entry.get("Meta"):
        fail("Meta", "must be omitted for legacy intention writes")
    sources = entry.get("Sources", [])
    if not sources:
        fail("Sources", "At least one source is required")
    seen: set[tuple[str, str, str]] = set()
    for i, source in enumerate(sources):
        _validate_source(source, f"Sources[{i}]", name == WILDCARD, legacy)
        key = (source["Name"], source.get("Peer", ""), source.get("SamenessGroup", ""))
        if key in seen:
            label = f'peer("{key[1]}") "{key[0]}"' if key[1] else f'"{key[0]}"'
            fail(f"Sources[{i}]", f"defines {label} more than once")
        seen.add(key)


def _validate_source(source: Mapping[str, Any], path: str, wildcard_destination: bool, legacy: bool) -> None:
    if not source.get("Name"):
        fail(f"{path}.Name", "Name is required")
    check_exact_or_wildcard(source["Name"], f"{path}.Name")
    if WILDCARD in source.get("Peer", ""):
        fail(f"{path}.Peer", "cannot use wildcard '*' in peer")
    if source.get("SamenessGroup"):
        if source.get("Peer"):
            fail(f"{path}.SamenessGroup", "cannot set SamenessGroup and Peer at the same time")
        fail(f"{path}.SamenessGroup", "sameness groups are a consul enterprise feature")
    if len(source.get("Description", "")) > DESCRIPTION_MAX_LENGTH:
        fail(f"{path}.Description", f"exceeds maximum length {DESCRIPTION_MAX_LENGTH}")
    _check_legacy_fields(source, path, legacy)
    permissions = source.get("Permissions", [])
    action = source.get("Action", "")
    if (legacy or not permissions) and action not in INTENTION_ACTIONS:
        fail(f"{path}.Action", "must be set to 'allow' or 'deny'")
    if permissions and action:
        fail(f"{path}.Action", "must be omitted if Permissions are specified")
    if permissions and wildcard_destination:
        fail(f"{path}.Permissions", "cannot be specified on intentions with wildcarded destinations")
    if source.get("Type") != DEFAULT_SOURCE_TYPE:
        fail(f"{path}.Type", f"must be set to '{DEFAULT_SOURCE_TYPE}'")
    for j, permission in enumerate(permissions):
        _validate_permission(permission, f"{path}.Permissions[{j}]")


def _check_legacy_fields(source: Mapping[str, Any], path: str, legacy: bool) -> None:
    if not legacy:
        for field in ("LegacyID", "LegacyMeta", "LegacyCreateTime", "LegacyUpdateTime"):
            if field in source:
                fail(f"{path}.{field}", "must be omitted")
        return
    if source.get("Peer"):
        fail(f"{path}.Peer", "cannot be set by legacy intentions")
    if source.get("Permissions"):
        fail(f"{path}.Permissions", "must not be set when using the legacy APIs")
    if not source.get("LegacyID"):
        fail(f"{path}.LegacyID", "must be set")
    check_meta(source.get("LegacyMeta", {}), f"{path}.LegacyMeta")
    for field in ("LegacyCreateTime", "LegacyUpdateTime"):
        stamp = source.get(field, "")
        if not stamp:
            fail(f"{path}.{field}", "must be set")
        if not is_rfc3339(stamp):
            fail(f"{path}.{field}", f'invalid timestamp "{stamp}": expected RFC 3339')


def _validate_permission(permission: Mapping[str, Any], path: str) -> None:
    if permission.get("Action", "") not in INTENTION_ACTIONS:
        fail(f"{path}.Action", "must be set to 'allow' or 'deny'")
    if "JWT" in permission:
        _check_jwt(permission["JWT"], f"{path}.JWT")
    if "HTTP" not in permission:
        fail(f"{path}.HTTP", "HTTP is required")
    http = permission["HTTP"]
    path = f"{path}.HTTP"
    path_fields = [f for f in ("PathExact", "PathPrefix", "PathRegex") if http.get(f)]
    if len(path_fields) > 1:
        fail(path, "should only contain at most one of PathExact, PathPrefix, or PathRegex")
    for field in ("PathExact", "PathPrefix"):
        if http.get(field) and not http[field].startswith("/"):
            fail(f"{path}.{field}", f"doesn't start with '/': \"{http[field]}\"")
    headers = http.get("Header", [])
    for k, header in enumerate(headers):
        _check_header(header, f"{path}.Header[{k}]")
    methods = http.get("Methods", [])
    for method in methods:
        if method not in HTTP_METHODS:
            fail(f"{path}.Methods", f'contains an invalid method "{method}"')
    duplicates = sorted({m for m in methods if methods.count(m) > 1})
    if duplicates:
        fail(f"{path}.Methods", f'contains "{duplicates[0]}" more than once')
    if not (path_fields or headers or methods):
        fail(path, "should not be empty")


_HEADER_MATCHERS = ("Present", "Exact", "Prefix", "Suffix", "Contains", "Regex")


def _check_header(header: Mapping[str, Any], path: str) -> None:
    if not header.get("Name"):
        fail(f"{path}.Name", "Name is required")
    matchers = [m for m in _HEADER_MATCHERS if header.get(m)]
    if len(matchers) != 1:
        fail(path, f"should contain exactly one of {', '.join(_HEADER_MATCHERS)}")
    if header.get("IgnoreCase") and matchers[0] in ("Present", "Regex"):
        fail(f"{path}.IgnoreCase", f"cannot be used with {matchers[0]}")


def _check_jwt(requirement: Mapping[str, Any], path: str) -> None:
    for i, provider in enumerate(requirement.get("Providers", [])):
        if not provider.get("Name"):
            fail(f"{path}.Providers[{i}].Name", "Name is required")
        for j, claim in enumerate(provider.get("VerifyClaims", [])):
            if not claim.get("Path"):
                fail(f"{path}.Providers[{i}].VerifyClaims[{j}].Path", "Path is required")

"""The runner's decisions, pure: the status and Consul's output text of a probe result, the
status of an alias check, and when a check runs next.

Output texts follow Consul's agent (agent/checks/check.go, alias.go) so operators and scripts
that read `Output` see what they know; network errors are phrased as Go prints them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from meshfed.fsm.records import STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING, HealthCheck

OUTPUT_MAX_SIZE = 4096  # bytes of an HTTP body kept in Output (Consul's default OutputMaxSize)
# A check that has not passed yet is retried this often during its first interval: a proxy is
# started right after its sidecar is registered, and must not wait a whole interval to be found.
NEW_CHECK_RETRY = 1.0

_HTTP_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently",
                 302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                 404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests",
                 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                 504: "Gateway Timeout"}


@dataclass(frozen=True)
class Result:
    status: str
    output: str


# ---- TCP ---------------------------------------------------------------------------------------


def tcp_result(address: str, error: str | None) -> Result:
    """`error` is None on a completed connect, else Go's text for the failure ("connect:
    connection refused", "i/o timeout")."""
    if error is None:
        return Result(STATUS_PASSING, f"TCP connect {address}: Success")
    return Result(STATUS_CRITICAL, f"dial tcp {address}: {error}")


# ---- HTTP --------------------------------------------------------------------------------------


def http_status(code: int) -> str:
    """Consul: 2xx passing, 429 Too Many Requests warning, anything else critical."""
    if 200 <= code <= 299:
        return STATUS_PASSING
    if code == 429:
        return STATUS_WARNING
    return STATUS_CRITICAL


def http_result(method: str, url: str, code: int, reason: str, body: bytes) -> Result:
    reason = reason or _HTTP_REASONS.get(code, "")
    status_line = f"{code} {reason}".rstrip()
    text = body[:OUTPUT_MAX_SIZE].decode("utf-8", "replace")
    return Result(http_status(code), f"HTTP {method} {url}: {status_line} Output: {text}")


def http_error(method: str, url: str, error: str) -> Result:
    """A request that got no answer, as Go's url.Error prints it: `Get "http://...": <error>`."""
    return Result(STATUS_CRITICAL, f'{method.capitalize()} "{url}": {error}')


# ---- alias -------------------------------------------------------------------------------------


def alias_result(node_checks: Iterable[HealthCheck], service_id: str, service_exists: bool,
                 node: str) -> Result:
    """Consul's CheckAlias.processChecks for a service of the local node: the worst status among
    the service's checks and the node's own (node-level) checks; passing when there are none;
    critical when the service is not registered at all. A critical check decides at once; a
    warning may still be overridden by a later critical."""
    status, output = STATUS_PASSING, "No checks found."
    for check in node_checks:
        if check.service_id and check.service_id != service_id:
            continue
        if check.status in (STATUS_CRITICAL, STATUS_WARNING):
            status, output = check.status, f"Aliased check {check.name!r} failing: {check.output}"
            if check.status == STATUS_CRITICAL:
                break
        elif status == STATUS_PASSING:
            output = "All checks passing."
    if not service_exists:
        return Result(STATUS_CRITICAL, f"Service {service_id} could not be found on node {node}")
    return Result(status, output)


# ---- schedule ----------------------------------------------------------------------------------


def first_delay(interval: float, *, found_at_start: bool, rng: random.Random | None = None) -> float:
    """A check registered while the runner runs goes at once (a new sidecar must be found healthy
    promptly); checks found when the server starts are spread over one interval, as Consul's
    agent staggers them, so a restart does not fire every probe in the same instant."""
    if not found_at_start:
        return 0.0
    return (rng or random).uniform(0.0, interval)


def next_delay(interval: float, status: str, *, ever_passed: bool, age: float) -> float:
    """Seconds until the next run. Normally one interval; a check that has not passed yet and is
    younger than one interval is retried every NEW_CHECK_RETRY seconds."""
    if not ever_passed and status != STATUS_PASSING and age < interval:
        return min(NEW_CHECK_RETRY, interval)
    return interval


def needs_write(stored: HealthCheck | None, result: Result) -> bool:
    """A Raft write only when the stored status or output differs (none for an unchanged run)."""
    return stored is not None and (stored.status, stored.output) != (result.status, result.output)

"""Every gRPC status has a deliberate HTTP answer (a missing one used to fall through to 500)."""

from __future__ import annotations

import grpc
import pytest

from meshfed.server.http.rpc_status import HTTP_STATUS, http_status


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_every_grpc_status_is_mapped(code: grpc.StatusCode) -> None:
    assert code in HTTP_STATUS


def test_retryable_conditions_are_not_server_faults() -> None:
    # A client (py-consul, a proxy) retries 503/504/429; a 500 says "bug", which these are not.
    assert http_status(grpc.StatusCode.CANCELLED) == 503
    assert http_status(grpc.StatusCode.UNAVAILABLE) == 503
    assert http_status(grpc.StatusCode.DEADLINE_EXCEEDED) == 504
    assert http_status(grpc.StatusCode.RESOURCE_EXHAUSTED) == 429


def test_client_mistakes_are_4xx_and_only_server_faults_are_500() -> None:
    server_faults = {c for c, status in HTTP_STATUS.items() if status == 500}
    assert server_faults == {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}
    assert http_status(grpc.StatusCode.INVALID_ARGUMENT) == 400
    assert http_status(grpc.StatusCode.PERMISSION_DENIED) == 403

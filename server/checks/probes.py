"""The I/O of a check run: one TCP connect or one HTTP request, turned into a `Result` by the
pure helpers of `decide.py`. No retries and no state: the runner decides when to call again.
"""

from __future__ import annotations

import asyncio
import errno
import ssl

import aiohttp
from multidict import CIMultiDict

from meshfed.server.checks.decide import OUTPUT_MAX_SIZE, Result, http_error, http_result, tcp_result
from meshfed.server.checks.spec import CheckSpec

USER_AGENT = "Consul Health Check"
ACCEPT = "text/plain, text/*, */*"

# Go's wording for the errors a probe meets most, so Output reads as Consul's does.
_GO_ERRNO = {
    errno.ECONNREFUSED: "connect: connection refused",
    errno.EHOSTUNREACH: "connect: no route to host",
    errno.ENETUNREACH: "connect: network is unreachable",
    errno.ECONNRESET: "read: connection reset by peer",
    errno.EADDRNOTAVAIL: "connect: cannot assign requested address",
}


def go_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "i/o timeout"
    if isinstance(exc, OSError) and exc.errno in _GO_ERRNO:
        return _GO_ERRNO[exc.errno]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def probe_tcp(spec: CheckSpec) -> Result:
    """Consul's CheckTCP: passing when a connection completes within the timeout."""
    try:
        host, port = _split(spec.target)
    except ValueError:
        return tcp_result(spec.target, f"address {spec.target}: missing port in address")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), spec.timeout)
    except (OSError, TimeoutError) as exc:
        return tcp_result(spec.target, go_error(exc))
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return tcp_result(spec.target, None)


class HTTPProber:
    """Consul's CheckHTTP. One client session per runner, created on first use (it needs the loop)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._insecure = ssl.create_default_context()
        self._insecure.check_hostname = False
        self._insecure.verify_mode = ssl.CERT_NONE

    async def probe(self, spec: CheckSpec) -> Result:
        if self._session is None:
            # No connection reuse: each run measures a fresh connect, as Consul's checks do.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        headers: CIMultiDict[str] = CIMultiDict({"User-Agent": USER_AGENT, "Accept": ACCEPT})
        for name, values in spec.header:  # the check's own headers replace the defaults, every value sent
            headers.popall(name, None)
            for value in values:
                headers.add(name, value)
        try:
            async with self._session.request(
                spec.method, spec.target, headers=headers, data=spec.body or None,
                timeout=aiohttp.ClientTimeout(total=spec.timeout), allow_redirects=not spec.disable_redirects,
                ssl=self._insecure if spec.tls_skip_verify else True,
                server_hostname=spec.tls_server_name or None,
            ) as response:
                body = await response.content.read(OUTPUT_MAX_SIZE)
                return http_result(spec.method, spec.target, response.status, response.reason or "", body)
        except aiohttp.ClientSSLError as exc:
            reason = getattr(exc.os_error, "reason", None) or go_error(exc.os_error)
            return http_error(spec.method, spec.target, f"tls: {str(reason).lower().replace('_', ' ')}")
        except aiohttp.ClientConnectorError as exc:
            return http_error(spec.method, spec.target, f"dial tcp {exc.host}:{exc.port}: {go_error(exc.os_error)}")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            text = ("context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                    if isinstance(exc, TimeoutError) else go_error(exc))
            return http_error(spec.method, spec.target, text)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

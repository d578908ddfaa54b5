"""`meshfed connect echo`: a TCP echo service, the `socat` of the operators' walkthrough, so the
demo and the tests need nothing outside the project to show bytes crossing the mesh."""

from __future__ import annotations

import asyncio
import contextlib
import signal


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    writer.close()


async def serve(host: str, port: int) -> int:
    server = await asyncio.start_server(_echo, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"echo listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()
    return 0

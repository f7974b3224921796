"""Liveness, readiness and Prometheus metrics for services without an HTTP API
(catalog, runner).

Written on asyncio's own server rather than pulling Litestar into the runner
image for three fixed GET paths; prometheus_client's bundled server has no
health paths, so it would need a second port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


async def serve_health(host: str, port: int, ready: Callable[[], bool],
                       alive: Callable[[], list[str]] | None = None,
                       not_ready: Callable[[], list[str]] | None = None) -> asyncio.Server:
    """/healthz: the process answers and `alive()` names nothing wrong.
    /readyz: `ready()` holds and neither `alive()` nor `not_ready()` names
    anything; a 503 lists what they name. /metrics: Prometheus.

    `alive` is for faults a restart of this process cures (a render stalled
    in its thread). A supervised loop waiting to restart belongs in
    `not_ready`: it restarts itself, and during a NATS outage every loop of
    every pod fails, so on liveness it would have the kubelet restart them all
    (a runner's restart reloads its model) while a new process would meet the
    same outage."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            content_type = "text/plain; charset=utf-8"
            wrong = alive() if alive is not None else []
            if path == "/healthz":
                status, body = (503, ("\n".join(wrong) + "\n").encode()) if wrong else (200, b"ok\n")
            elif path == "/readyz":
                # A 503 names what is wrong (a supervised loop waiting to restart, a
                # stalled render), so an operator reading the probe sees the part.
                wrong = wrong + (not_ready() if not_ready is not None else [])
                is_ready = ready() and not wrong
                status, body = (200, b"ready\n") if is_ready else (
                    503, "".join(f"{line}\n" for line in ["not ready", *wrong]).encode())
            elif path == "/metrics":
                status, body, content_type = 200, generate_latest(), CONTENT_TYPE_LATEST
            else:
                status, body = 404, b"not found\n"
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a probe that hung up or stalled gets no answer; the next one will
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)

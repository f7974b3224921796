"""Liveness and readiness for Kubernetes probes."""

from __future__ import annotations

from litestar import get
from litestar.datastructures import State

from mochi_api.problems import unavailable
from mochi_contracts.streams import JOBS_STREAM


@get("/healthz", summary="Liveness", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: NATS and the job stream answer", tags=["health"])
async def readyz(state: State) -> dict[str, str]:
    ctx = state.ctx
    if not ctx.nc.is_connected:
        raise unavailable("not connected to NATS")
    try:
        await ctx.js.stream_info(JOBS_STREAM)
    except Exception as err:  # any failure here means "not ready", which is the answer
        raise unavailable(f"job stream not reachable: {type(err).__name__}") from None
    return {"status": "ready"}

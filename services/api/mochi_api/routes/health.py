"""Liveness and readiness for Kubernetes probes."""

from __future__ import annotations

from litestar.datastructures import State

from mochi_api.head import get_and_head
from mochi_api.problems import unavailable
from mochi_contracts.streams import JOBS_STREAM


@get_and_head("/healthz", summary="Liveness", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get_and_head("/readyz", summary="Readiness: NATS, the job stream and every background task",
     description="503 problem+json naming what is not ready: NATS, the job stream, or a background "
                 "task (the event hub that feeds live event streams, the video retention sweep) "
                 "waiting to restart after an error.", tags=["health"])
async def readyz(state: State) -> dict[str, object]:
    ctx = state.ctx
    if not ctx.nc.is_connected:
        raise unavailable("not connected to NATS")
    down = ctx.tasks.unhealthy()
    if down:
        raise unavailable("background task not running: " + "; ".join(down))
    try:
        await ctx.js.stream_info(JOBS_STREAM)
    except Exception as err:  # any failure here means "not ready", which is the answer
        raise unavailable(f"job stream not reachable: {type(err).__name__}") from None
    return {"status": "ready",
            "tasks": {s.name: {"running": s.running, "restarts": s.restarts, "last_error": s.last_error}
                      for s in ctx.tasks.states.values()}}

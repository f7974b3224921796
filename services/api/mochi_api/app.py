"""The Litestar application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsPlugin

from mochi_api import problems
from mochi_api.api_keys import ApiKeys
from mochi_api.caller import RATE_LIMIT_STORE, caller_dependency, rate_limit_store, submit_rate_limit
from mochi_api.context import ApiContext
from mochi_api.idempotency import open_bucket
from mochi_api.event_hub import EventHub
from mochi_api.job_reader import JobReader
from mochi_api.request_guards import (BoundedHeaders, HostCheckedFirst, JsonBodiesOnly, KnownHostsOnly,
                                      allowed_host_names)
from mochi_api.retention import keep_videos
from mochi_api.metrics import ApiMetricsPlugin
from mochi_api.routes.estimates import estimate_job
from mochi_api.routes.events import all_events, job_events
from mochi_api.routes.health import healthz, readyz
from mochi_api.routes.jobs import JobsController
from mochi_api.routes.previews import PreviewsController
from mochi_api.routes.thumbnails import ThumbnailsController
from mochi_api.settings import ApiSettings
from mochi_api.web import web_routes
from mochi_common.nats_conn import connect
from mochi_common.storage import open_store
from mochi_common.supervise import Supervisor
from mochi_common.jetstream_setup import ensure_jobs_stream

if TYPE_CHECKING:  # uvicorn is imported where the server starts, not with the app
    import socket

    import uvicorn

log = structlog.get_logger()


def create_app(settings: ApiSettings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nc = await connect(settings.nats_url, name="mochi-api")
        js = nc.jetstream()
        await ensure_jobs_stream(js, settings.jetstream())
        hub = EventHub(js)
        await hub.prepare()
        tasks = Supervisor()
        app.state.ctx = ApiContext(settings=settings, nc=nc, js=js,
                                   reader=JobReader(nc, settings.catalog_timeout_s, settings.scheduling),
                                   store=open_store(settings.store_url, settings), hub=hub,
                                   idempotency=await open_bucket(js, settings.idempotency_ttl_s,
                                                                 settings.jetstream_replicas), tasks=tasks,
                                   keys=keys)
        tasks.start("event-hub", hub.run)
        store = app.state.ctx.store
        tasks.start("retention", lambda: keep_videos(store, settings.video_lifetime_s,
                                                     settings.retention_sweep_interval_s))
        log.info("api.ready", url=f"http://{settings.host}:{settings.port}")
        try:
            yield
        finally:
            # Neither the hub nor the sweep has work to finish (the streams were
            # ended before this, see _stream_ending_server): cancel them rather
            # than wait the Supervisor's default, which would eat the grace period.
            await tasks.stop(timeout_s=0.5)
            await nc.drain()

    keys = ApiKeys.load(settings.api_keys_file, settings.allow_anonymous)
    # Outermost first: oversized headers, an unknown Host, a body that is not JSON are
    # refused before the limiter counts them or any route reads them (a Host that is
    # no authority even before that: HostCheckedFirst, outside the request metrics).
    guards: list = [BoundedHeaders()]
    if settings.allow_anonymous:
        guards.append(KnownHostsOnly(allowed_host_names(settings.host, settings.allowed_hosts)))
    guards.append(JsonBodiesOnly())
    handlers: dict = {400: problems.on_bad_request, 429: problems.on_too_many, Exception: problems.on_unexpected,
                      **{status: problems.on_router_error for status in problems.ROUTER_KINDS}}
    handlers.update({err: problems.on_nats_down for err in problems.NATS_DOWN_ERRORS})
    return Litestar(
        route_handlers=[JobsController, ThumbnailsController, PreviewsController, estimate_job, job_events,
                        all_events, healthz, readyz,
                        *web_routes(settings.web_dir)],
        lifespan=[lifespan],
        plugins=[ProblemDetailsPlugin(ProblemDetailsConfig(enable_for_all_http_exceptions=True)),
                 ApiMetricsPlugin(), HostCheckedFirst()],
        exception_handlers=handlers,
        dependencies={"caller": Provide(caller_dependency(keys), sync_to_thread=False)},
        middleware=[*guards, submit_rate_limit(keys, settings.submits_per_minute).middleware],
        stores={RATE_LIMIT_STORE: rate_limit_store()},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Mochi Serve", version="0.1.0", path="/schema",
            description="Text-to-video jobs with Genmo's Mochi-1",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")]),
    )


def _stream_ending_server(app: Litestar, settings: ApiSettings, config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn, but its shutdown first ends the event streams. uvicorn waits
    for open responses before it runs the app's lifespan shutdown, so ending
    them there is too late: an SSE stream never finishes by itself and the
    replica would wait for ever (or for the whole grace period)."""
    import uvicorn

    class StreamEndingServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            ctx = getattr(app.state, "ctx", None)  # None if SIGTERM came before the lifespan ran
            if ctx is not None:
                log.info("api.stopping", streams_ended=ctx.hub.close(), grace_s=settings.shutdown_grace_s)
            await super().shutdown(sockets)

    return StreamEndingServer(config)


def main() -> None:
    import uvicorn

    from mochi_common.logs import configure_logging
    from mochi_common.settings import load_settings

    settings = load_settings(ApiSettings)
    configure_logging("api", settings.log_level)
    app = create_app(settings)
    # "auto" picks uvloop and httptools when installed (the api extras bring them).
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, loop="auto", http="auto",
                            # uvicorn hands it to asyncio.wait_for, where a float is fine.
                            timeout_graceful_shutdown=settings.shutdown_grace_s)  # type: ignore[arg-type]  # int in uvicorn
    _stream_ending_server(app, settings, config).run()

"""The catalog process: follow the job stream into SQLite, answer queries.

Each replica keeps its own SQLite file and its own ordered consumer that starts
right after the replica's applied sequence, so replicas share nothing but the
stream, and queries are load-balanced over them by the micro queue group."""

from __future__ import annotations

import asyncio
import time
import signal
from pathlib import Path

import msgspec
import nats.micro
import structlog
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.micro.request import Request

from mochi_common import event_loop
from mochi_common.health_server import serve_health
from mochi_common.logs import configure_logging
from mochi_common.nats_conn import connect
from mochi_common.settings import load_settings
from mochi_contracts import catalog as api
from mochi_contracts import subjects
from mochi_common.jetstream_setup import ensure_jobs_stream
from mochi_contracts.streams import JOBS_STREAM, JetStreamSettings
from mochi_catalog import metrics
from mochi_catalog.projection import Projection, RawEvent
from mochi_catalog.settings import CatalogSettings

log = structlog.get_logger()
_encode = msgspec.json.Encoder().encode


class Catalog:
    def __init__(self, settings: CatalogSettings, nc: Client):
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        path = Path(settings.db_path)
        if settings.rebuild and path.exists():
            log.info("catalog.rebuild", db=str(path))
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        self.projection = Projection(path)
        self.caught_up = asyncio.Event()
        self._pace: tuple[float | None, int] = (None, 0)
        self._pace_at = float("-inf")

    # ---- projection ------------------------------------------------------

    async def _stream_last_seq(self) -> int:
        info = await self.js.stream_info(JOBS_STREAM)
        applied = self.projection.applied_seq()
        if applied > info.state.last_seq:
            # The stream is younger than this database (NATS lost its store):
            # the only truth left is the stream, so project it from scratch.
            log.warning("catalog.ahead_of_stream", applied=applied, stream_last=info.state.last_seq)
            self.projection.close()
            for suffix in ("", "-wal", "-shm"):
                Path(self.settings.db_path + suffix).unlink(missing_ok=True)
            self.projection = Projection(Path(self.settings.db_path))
        return info.state.last_seq

    async def follow(self) -> None:
        # Ready once everything in the stream at start-up is applied.
        target = await self._stream_last_seq()
        start = self.projection.applied_seq() + 1
        log.info("catalog.follow", from_seq=start, catch_up_to=target)
        if start > target:
            self.caught_up.set()
        sub = await self.js.subscribe(
            subjects.ALL_JOB_EVENTS, stream=JOBS_STREAM, ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=start))
        batch: list[RawEvent] = []
        while True:
            try:
                # Wait long for the first event of a batch, briefly for the rest.
                msg = await sub.next_msg(timeout=0.05 if batch else 1.0)
            except NatsTimeout:
                msg = None
            if msg is not None:
                batch.append(RawEvent(
                    seq=msg.metadata.sequence.stream, subject=msg.subject,
                    data=msg.data, headers=dict(msg.headers or {})))
                if len(batch) < self.settings.batch_size and msg.metadata.num_pending > 0:
                    continue
            if batch:
                self.projection.apply_batch(batch)
                batch = []
                if self.projection.applied_seq() >= target:
                    self.caught_up.set()

    # ---- queries ---------------------------------------------------------

    def _recent_pace(self) -> tuple[float | None, int]:
        # Two aggregate queries per read of a queued job would dominate a busy
        # catalog; an estimate a second old is as good.
        now = time.monotonic()
        if now - self._pace_at > 1.0:
            self._pace, self._pace_at = self.projection.pace(), now
        return self._pace

    async def on_get(self, req: Request) -> None:
        try:
            q = msgspec.json.decode(req.data, type=api.GetJob)
        except msgspec.MsgspecError as err:
            await req.respond_error("400", str(err))
            return
        state = self.projection.get(q.job_id, q.owner)
        position = self.projection.queue_position(state) if state else None
        mean, running = self._recent_pace() if position else (None, 0)
        reply = api.GetJobReply(
            job=state, applied_seq=self.projection.applied_seq(), queue_position=position,
            mean_job_seconds=mean, running_jobs=running)
        await req.respond(_encode(reply))

    async def on_list(self, req: Request) -> None:
        try:
            q = msgspec.json.decode(req.data or b"{}", type=api.ListJobs)
        except msgspec.MsgspecError as err:
            await req.respond_error("400", str(err))
            return
        jobs, next_seq = self.projection.list(q.owner, list(q.status or []), q.limit, q.before_seq)
        page = api.JobPage(jobs=jobs, next_before_seq=next_seq,
                           applied_seq=self.projection.applied_seq())
        await req.respond(_encode(page))

    async def serve(self) -> nats.micro.Service:
        svc = await nats.micro.add_service(
            self.nc, name=subjects.CATALOG_SERVICE, version="0.1.0",
            description="Mochi Serve job catalog: get and list jobs")
        await svc.add_endpoint(name="get", subject=subjects.CATALOG_GET, handler=self.on_get)
        await svc.add_endpoint(name="list", subject=subjects.CATALOG_LIST, handler=self.on_list)
        return svc


async def run(settings: CatalogSettings) -> None:
    nc = await connect(settings.nats_url, name="mochi-catalog")
    js = nc.jetstream()
    await ensure_jobs_stream(js, JetStreamSettings(replicas=settings.jetstream_replicas))
    catalog = Catalog(settings, nc)
    serving = asyncio.Event()
    if settings.health_port:
        await serve_health(settings.health_host, settings.health_port,
                           lambda: serving.is_set() and nc.is_connected)
    follower = asyncio.create_task(catalog.follow(), name="follow")
    sampler = asyncio.create_task(metrics.refresh_forever(
        js, lambda: catalog.projection, settings.metrics_interval_s), name="metrics")
    # Queries are served only once the replica has caught up with the stream,
    # so a fresh replica never answers from a half-built list.
    await asyncio.wait([follower, asyncio.create_task(catalog.caught_up.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if follower.done():
        follower.result()
    svc = await catalog.serve()
    serving.set()
    log.info("catalog.ready", applied_seq=catalog.projection.applied_seq(), db=settings.db_path)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([follower, stopper], return_when=asyncio.FIRST_COMPLETED)
    await svc.stop()
    if follower in done:
        follower.result()  # the follower died: fail loudly with its error
    follower.cancel()
    sampler.cancel()
    await nc.drain()
    catalog.projection.close()
    log.info("catalog.stopped")


def main() -> None:
    settings = load_settings(CatalogSettings)
    configure_logging("catalog", settings.log_level)
    event_loop.run(run(settings))

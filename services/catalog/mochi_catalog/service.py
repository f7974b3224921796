"""The catalog process: follow the job stream into SQLite, answer queries.

Each replica keeps its own SQLite file and its own ordered consumer that starts
right after the replica's applied sequence, so replicas share nothing but the
stream, and queries are load-balanced over them by the micro queue group."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import msgspec
import nats.micro
import structlog
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.micro.request import Request

from mochi_catalog import metrics
from mochi_catalog.projection import Projection, RawEvent
from mochi_catalog.settings import CatalogSettings
from mochi_common import event_loop
from mochi_common.health_server import serve_health
from mochi_common.jetstream_setup import ensure_jobs_stream
from mochi_common.logs import configure_logging
from mochi_common.nats_conn import connect
from mochi_common.settings import load_settings
from mochi_common.supervise import Supervisor
from mochi_contracts import catalog as api
from mochi_contracts import subjects
from mochi_contracts.streams import JOBS_STREAM

log = structlog.get_logger()
_encode = msgspec.json.Encoder().encode


class Catalog:
    def __init__(self, settings: CatalogSettings, nc: Client):
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        if settings.rebuild:
            log.info("catalog.rebuild", db=settings.db_path)
            self._delete_db()
        self.projection = self._open()
        self.caught_up = asyncio.Event()
        self.svc: nats.micro.Service | None = None
        # Set when a query met a damaged database: the follower rebuilds.
        self._damaged: str | None = None
        self._pace: tuple[float | None, int] = (None, 0)
        self._pace_at = float("-inf")

    # ---- the database ----------------------------------------------------

    def _delete_db(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(self.settings.db_path + suffix).unlink(missing_ok=True)

    def _open(self) -> Projection:
        """The projection in db_path; a file that is not a sound database is
        thrown away (the stream rebuilds it)."""
        try:
            projection = Projection(Path(self.settings.db_path))
            projection.check()
            return projection
        except sqlite3.DatabaseError as err:
            log.error("catalog.damaged_at_start", db=self.settings.db_path, error=str(err))
            metrics.DAMAGED.inc()
            self._delete_db()
            return Projection(Path(self.settings.db_path))

    async def _rebuild(self, why: str) -> None:
        """Stop answering (queries go to the other replicas; the API answers 503
        without one), throw the database away, and project the stream again."""
        log.error("catalog.damaged", db=self.settings.db_path, error=why)
        metrics.DAMAGED.inc()
        self.caught_up.clear()
        await self.stop_serving()
        try:
            self.projection.close()
        except sqlite3.Error as err:  # a damaged file may not even close cleanly
            log.warning("catalog.close_failed", error=str(err))
        self._delete_db()
        self.projection = Projection(Path(self.settings.db_path))
        self._damaged = None

    def damaged(self, err: sqlite3.DatabaseError) -> None:
        self._damaged = self._damaged or str(err)

    # ---- projection ------------------------------------------------------

    async def _stream_last_seq(self) -> int:
        info = await self.js.stream_info(JOBS_STREAM)
        applied = self.projection.applied_seq()
        if applied > info.state.last_seq:
            # The stream is younger than this database (NATS lost its store):
            # the only truth left is the stream, so project it from scratch.
            log.warning("catalog.ahead_of_stream", applied=applied, stream_last=info.state.last_seq)
            self.projection.close()
            self._delete_db()
            self.projection = Projection(Path(self.settings.db_path))
        return int(info.state.last_seq)

    async def follow(self) -> None:
        """Project the stream for ever, serving queries whenever caught up. A
        damaged database (found here or by a query) is rebuilt from the stream;
        anything else (NATS away) ends this run and the supervisor starts it again."""
        while True:
            try:
                await self._follow_once()
            except sqlite3.DatabaseError as err:
                self.damaged(err)
            await self._rebuild(self._damaged or "damaged")

    async def _follow_once(self) -> None:
        # Caught up once everything in the stream at this start is applied.
        target = await self._stream_last_seq()
        start = self.projection.applied_seq() + 1
        log.info("catalog.follow", from_seq=start, catch_up_to=target)
        if start > target:
            await self._caught_up()
        sub = await self.js.subscribe(
            subjects.ALL_JOB_EVENTS, stream=JOBS_STREAM, ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=start))
        batch: list[RawEvent] = []
        try:
            while self._damaged is None:
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
                        await self._caught_up()
        finally:
            try:
                await sub.unsubscribe()
            except Exception as err:  # the connection may be gone with the error that ended this run
                log.info("catalog.unsubscribe_failed", error=repr(err))

    async def _caught_up(self) -> None:
        self.caught_up.set()
        if self.svc is None:
            self.svc = await self.serve()
            log.info("catalog.ready", applied_seq=self.projection.applied_seq(), db=self.settings.db_path)

    async def stop_serving(self) -> None:
        if self.svc is not None:
            svc, self.svc = self.svc, None
            try:
                await svc.stop()
            except Exception as err:  # NATS away: its subscriptions go with the connection
                log.warning("catalog.stop_serving_failed", error=repr(err))

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
        try:
            state = self.projection.get(q.job_id, q.owner)
            position = self.projection.queue_position(state) if state else None
            mean, running = self._recent_pace() if position else (None, 0)
            applied = self.projection.applied_seq()
        except sqlite3.DatabaseError as err:
            await self._refuse(req, err)
            return
        reply = api.GetJobReply(job=state, applied_seq=applied, queue_position=position,
                                mean_job_seconds=mean, running_jobs=running)
        await req.respond(_encode(reply))

    async def on_list(self, req: Request) -> None:
        try:
            q = msgspec.json.decode(req.data or b"{}", type=api.ListJobs)
        except msgspec.MsgspecError as err:
            await req.respond_error("400", str(err))
            return
        try:
            jobs, next_seq = self.projection.list(q.owner, list(q.status or []), q.limit, q.before_seq)
            applied = self.projection.applied_seq()
        except sqlite3.DatabaseError as err:
            await self._refuse(req, err)
            return
        await req.respond(_encode(api.JobPage(jobs=jobs, next_before_seq=next_seq, applied_seq=applied)))

    async def _refuse(self, req: Request, err: sqlite3.DatabaseError) -> None:
        """A damaged database: this query is answered as unavailable (the API
        answers 503) and the follower rebuilds, serving nothing meanwhile."""
        self.damaged(err)
        await req.respond_error("503", "this catalog replica found its database damaged and is rebuilding it")

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
    await ensure_jobs_stream(js, settings.jetstream())
    catalog = Catalog(settings, nc)
    supervisor = Supervisor()
    if settings.health_port:
        # Ready only while it answers queries: caught up with the stream, its
        # database sound, and its loops running.
        await serve_health(settings.health_host, settings.health_port,
                           lambda: catalog.svc is not None and nc.is_connected and supervisor.healthy(),
                           not_ready=supervisor.unhealthy)
    supervisor.start("follow", catalog.follow)
    supervisor.start("metrics", lambda: metrics.refresh_forever(
        js, lambda: catalog.projection, settings.metrics_interval_s))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await catalog.stop_serving()
    await supervisor.stop(timeout_s=0)
    await nc.drain()
    catalog.projection.close()
    log.info("catalog.stopped")


def main() -> None:
    settings = load_settings(CatalogSettings)
    configure_logging("catalog", settings.log_level)
    event_loop.run(run(settings))

"""A queued job's place and start as the deployment will really run it.

The place: in FIFO mode the catalog's count of queued jobs submitted before
it; in fair mode (MOCHI_SCHEDULING=fair) its index in the scheduler leader's
planned order (mochi_contracts.scheduling.QueueOrder in the KV bucket
SCHEDULER_QUEUE_BUCKET), so the API never re-derives the scheduler's choice
and never imports it. A job the plan does not list yet (submitted since the
leader last wrote, or no leader for a TTL) keeps the catalog's count; one
submitted well before the plan was written and not in it has been released
to a free lane (the scheduler releases only into free lanes): it is next, now.

The start: estimates.estimated_start on the running jobs' own finishes
(phases after the last step included, at the pace measured over recent
completed jobs), each job ahead taking the mean work of the queued jobs at
that pace scaled by their size (mochi_contracts.job_cost, as POST
/v1/estimates counts them, so the estimate before submitting and the
queued job's agree), read from the catalog at most once a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
import structlog
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, NotFoundError

from mochi_api import estimates
from mochi_contracts import catalog, job_cost, pace
from mochi_contracts.events import utcnow
from mochi_contracts.job_state import JobState
from mochi_contracts.scheduling import QueueOrder, Scheduling, decode_queue_order
from mochi_contracts.streams import SCHEDULER_QUEUE_BUCKET, SCHEDULER_QUEUE_KEY

log = structlog.get_logger()

# How old a read of the plan or of the running jobs may be: estimates a
# second old are as good, and a busy list page must not ask once per job.
FRESH_S = 1.0
# The running jobs asked for (more than any deployment's lanes).
RUNNING_PAGE = catalog.MAX_PAGE
# Completed jobs the pace is measured over, and queued jobs the work ahead is averaged over.
RECENT_COMPLETED = catalog.MAX_PAGE
QUEUED_PAGE = catalog.MAX_PAGE


@dataclass
class Lanes:
    running: list[JobState] = field(default_factory=list)
    after_steps_pace: float | None = None
    measured: list[job_cost.Measured] = field(default_factory=list)
    # The mean work of a queued job here (None before anything completed).
    queued_work_s: float | None = None
    read_at: float = -FRESH_S

    def work_s(self, state: JobState) -> float | None:
        return job_cost.work_seconds(state.request, self.measured, self.after_steps_pace)


# A job submitted this long before the plan was written has been seen by the
# leader (its view follows the job stream within milliseconds; clocks may differ).
SEEN_BY_PLAN_S = 2.0


@dataclass
class Plan:
    positions: dict[str, int] = field(default_factory=dict)
    out: int = 0
    written_at: datetime | None = None
    complete: bool = False  # the plan lists every queued job (not cut short)
    read_at: float = -FRESH_S

    def released(self, job: JobState) -> bool:
        """Queued in the catalog, but out of the scheduler's queue: released."""
        return (self.complete and self.written_at is not None and job.id not in self.positions
                and job.created_at < self.written_at - timedelta(seconds=SEEN_BY_PLAN_S))


class QueueEstimates:
    def __init__(self, js: Any, list_jobs: Callable[[catalog.ListJobs], Awaitable[catalog.JobPage]],
                 scheduling: Scheduling = "fifo",
                 unavailable: tuple[type[Exception], ...] = (NoRespondersError, NatsTimeout)):
        self.js = js
        self.list_jobs = list_jobs
        # What list_jobs raises when the catalog cannot answer now.
        self.unavailable = unavailable
        self.scheduling = scheduling
        self._lanes = Lanes()
        self._plan = Plan()
        self._kv: Any = None
        # One read at a time: the reads a burst of GETs asks for meanwhile wait for it.
        self._reading_lanes = asyncio.Lock()
        self._reading_plan = asyncio.Lock()

    async def queued(self, job: JobState, catalog_position: int | None, mean_job_s: float | None,
                     now: datetime | None = None) -> tuple[int | None, datetime | None]:
        """(queue_position, estimated_start_at) of a job the catalog has queued."""
        if catalog_position is None:
            return None, None
        now = now or utcnow()
        position, out = catalog_position, 0
        if self.scheduling == "fair":
            plan = await self.plan()
            if plan.released(job):
                return 1, now
            position = plan.positions.get(job.id, catalog_position)
            out = plan.out
        lanes = await self.lanes()
        per_job_s = lanes.queued_work_s if lanes.queued_work_s is not None else mean_job_s
        busy = estimates.lane_free_at(lanes.running, lanes.after_steps_pace, per_job_s, now, lanes.work_s)
        return position, estimates.estimated_start(position, busy, max(len(busy), out), per_job_s, now)

    async def after_steps_pace(self) -> float | None:
        """Seconds after the last step per pixel-frame, for a running job's finish."""
        return (await self.lanes()).after_steps_pace

    async def lanes(self) -> Lanes:
        async with self._reading_lanes:
            if time.monotonic() - self._lanes.read_at < FRESH_S:
                return self._lanes
            return await self._read_lanes()

    async def _read_lanes(self) -> Lanes:
        try:
            running = await self.list_jobs(catalog.ListJobs(status=["running"], limit=RUNNING_PAGE))
            done = await self.list_jobs(catalog.ListJobs(status=["completed"], limit=RECENT_COMPLETED))
            queued = await self.list_jobs(catalog.ListJobs(status=["queued"], limit=QUEUED_PAGE))
        except self.unavailable as err:
            # No catalog now: the last read stands (an empty one at first) until it answers.
            log.warning("api.estimates_without_catalog", error=repr(err))
            # Not asked again for FRESH_S: the reads waiting on the lock must not each time out in turn.
            self._lanes = Lanes(self._lanes.running, self._lanes.after_steps_pace, self._lanes.measured,
                                self._lanes.queued_work_s, read_at=time.monotonic())
            return self._lanes
        after = pace.after_steps_pace(done.jobs)
        measured = job_cost.measured(done.jobs)
        work = [w for w in (job_cost.work_seconds(j.request, measured, after) for j in queued.jobs) if w is not None]
        self._lanes = Lanes(running=running.jobs, after_steps_pace=after, measured=measured,
                            queued_work_s=sum(work) / len(work) if work else None, read_at=time.monotonic())
        return self._lanes

    async def plan(self) -> Plan:
        async with self._reading_plan:
            if time.monotonic() - self._plan.read_at < FRESH_S:
                return self._plan
            order = await self._read_plan()
            self._plan = Plan(positions={job_id: i for i, job_id in enumerate(order.jobs, 1)} if order else {},
                              out=order.out if order else 0, written_at=order.time if order else None,
                              complete=order is not None and len(order.jobs) >= order.queued,
                              read_at=time.monotonic())
            return self._plan

    async def _read_plan(self) -> QueueOrder | None:
        try:
            if self._kv is None:
                self._kv = await self.js.key_value(SCHEDULER_QUEUE_BUCKET)
            entry = await self._kv.get(SCHEDULER_QUEUE_KEY)
        except (BucketNotFoundError, KeyNotFoundError, KeyDeletedError, NotFoundError):
            return None  # no scheduler has led yet, or its plan expired: the catalog's count stands
        except NatsTimeout as err:
            log.warning("api.queue_order_unread", error=repr(err))
            return None
        try:
            return decode_queue_order(entry.value or b"")
        except msgspec.MsgspecError as err:
            log.warning("api.queue_order_unreadable", error=str(err)[:300])
            return None

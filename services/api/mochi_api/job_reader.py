"""Read a job: the catalog's row, with the stream's own record laid over it.

The API keeps no job state. The catalog may lag the stream by a few events,
so direct gets (no consumer, one round trip each) of the job's newest event,
its final event and its cancel request make a GET right after a POST or a
cancel see its own write. Without the catalog, the stream alone answers: the job's submitted,
started, progress, cancel-request and final events, each read from its own
subject, so a log line or a webhook record that came last hides nothing.
Every event is decoded at the boundary (mochi_common.nats_conn.last_event):
a refused one is never laid over anything."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import msgspec
import structlog
from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from mochi_api.problems import problem
from mochi_api.queue_estimates import QueueEstimates
from mochi_common.nats_conn import StoredEvent, last_event
from mochi_contracts import catalog, subjects
from mochi_contracts.events import JobSubmitted
from mochi_contracts.job_state import JobState, apply, new_state
from mochi_contracts.scheduling import Scheduling

log = structlog.get_logger()
_encode = msgspec.json.Encoder().encode

# The subjects that hold what a job's status and phase are made of, besides
# the final one and the cancel request (which every get reads: JobReader.get).
_STATE_TYPES = ("started", "progress", "phase")
# How long a client should wait after the catalog answered with an error.
CATALOG_RETRY_AFTER_S = 5


class CatalogFailed(Exception):
    """The catalog answered, but with an error or with something unreadable
    (a replica whose database is damaged)."""


@dataclass(frozen=True)
class JobRead:
    state: JobState
    queue_position: int | None = None
    estimated_start: datetime | None = None
    # Seconds per pixel-frame after the last step (decode, encode, store), for a running job's finish.
    after_steps_pace: float | None = None


def _overlay(state: JobState, found: list[StoredEvent | None]) -> JobState:
    # Oldest first: apply() ignores what is at or below the state's last_seq.
    for stored in sorted((f for f in found if f is not None), key=lambda f: f.seq):
        state = apply(state, stored.event, stored.seq)
    return state


class JobReader:
    def __init__(self, nc: Client, timeout_s: float, scheduling: Scheduling = "fifo"):
        self.nc = nc
        self.js = nc.jetstream()
        self.timeout_s = timeout_s
        self.queue = QueueEstimates(self.js, self._page, scheduling, (NoRespondersError, NatsTimeout, CatalogFailed))

    async def _ask(self, subject: str, query: msgspec.Struct, reply_type: type) -> object:
        reply = await self.nc.request(subject, _encode(query), timeout=self.timeout_s)
        if reply.headers and reply.headers.get("Nats-Service-Error-Code"):
            raise CatalogFailed(f"catalog error {reply.headers.get('Nats-Service-Error-Code')}: "
                                f"{reply.headers.get('Nats-Service-Error', '')[:300]}")
        try:
            return msgspec.json.decode(reply.data, type=reply_type)
        except msgspec.MsgspecError as err:
            raise CatalogFailed(f"unreadable catalog reply: {err}") from None

    async def _catalog_get(self, job_id: str, owner: str | None) -> JobRead | None:
        try:
            got = await self._ask(subjects.CATALOG_GET, catalog.GetJob(job_id=job_id, owner=owner),
                                  catalog.GetJobReply)
        except (NoRespondersError, NatsTimeout):
            return None  # no catalog right now: the stream alone still answers
        except CatalogFailed as err:
            # The stream answers a single job as well; only lists need the catalog.
            log.warning("api.catalog_failed", error=str(err), job_id=job_id)
            return None
        assert isinstance(got, catalog.GetJobReply)
        if got.job is None:
            return None
        position, start = await self.queue.queued(got.job, got.queue_position, got.mean_job_seconds)
        return JobRead(got.job, position, start)

    async def get(self, job_id: str, owner: str | None) -> JobRead | None:
        # All at once: the catalog's row, the job's newest event, its final one
        # and its cancel request. A queued job's cancel writes the request and
        # then the final event, so the newest event alone would hide the
        # request from a read that the catalog has not caught up with.
        read, latest, final, cancel = await asyncio.gather(
            self._catalog_get(job_id, owner), last_event(self.js, subjects.job_events(job_id)),
            last_event(self.js, subjects.job_final(job_id)),
            last_event(self.js, subjects.event_subject(job_id, "cancel_requested")))
        if read is not None:
            state = _overlay(read.state, [cancel, latest, final])
            if state.status == "running":
                return JobRead(state, after_steps_pace=await self.queue.after_steps_pace())
            if state.status != "queued":
                return JobRead(state)
            return JobRead(state, read.queue_position, read.estimated_start)
        submitted, *more = await asyncio.gather(
            last_event(self.js, subjects.event_subject(job_id, "submitted")),
            *(last_event(self.js, subjects.event_subject(job_id, kind)) for kind in _STATE_TYPES))
        if submitted is None or not isinstance(submitted.event, JobSubmitted):
            return None
        if owner is not None and submitted.event.owner != owner:
            return None
        return JobRead(_overlay(new_state(submitted.event, submitted.seq), [*more, cancel, latest, final]))

    async def _page(self, query: catalog.ListJobs) -> catalog.JobPage:
        page = await self._ask(subjects.CATALOG_LIST, query, catalog.JobPage)
        assert isinstance(page, catalog.JobPage)
        return page

    async def list(self, query: catalog.ListJobs) -> catalog.JobPage:
        try:
            page = await self._ask(subjects.CATALOG_LIST, query, catalog.JobPage)
        except CatalogFailed as err:
            log.warning("api.catalog_failed", error=str(err))
            exc = problem(503, "catalog-unavailable", "Job list unavailable",
                          "the job catalog answered with an error; retry shortly")
            exc.headers = {"Retry-After": str(CATALOG_RETRY_AFTER_S)}
            raise exc from None
        assert isinstance(page, catalog.JobPage)
        return page

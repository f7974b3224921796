"""Read a job: the catalog's row, with the stream's newest event laid over it.

The API keeps no job state. The catalog may lag the stream by a few events,
so a direct get of the job's last event (no consumer, one round trip) makes a
GET right after a POST or a cancel see its own write."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from mochi_api.estimates import estimated_start
from mochi_common.nats_conn import last_event
from mochi_contracts import catalog, subjects
from mochi_contracts.events import JobSubmitted, utcnow
from mochi_contracts.job_state import JobState, apply, new_state

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class JobRead:
    state: JobState
    queue_position: int | None = None
    estimated_start: datetime | None = None


class JobReader:
    def __init__(self, nc: Client, timeout_s: float):
        self.nc = nc
        self.js = nc.jetstream()
        self.timeout_s = timeout_s

    async def _ask(self, subject: str, query: msgspec.Struct, reply_type: type) -> object:
        reply = await self.nc.request(subject, _encode(query), timeout=self.timeout_s)
        if reply.headers and reply.headers.get("Nats-Service-Error-Code"):
            raise RuntimeError(f"catalog error: {reply.headers.get('Nats-Service-Error')}")
        return msgspec.json.decode(reply.data, type=reply_type)

    async def _catalog_get(self, job_id: str, owner: str | None) -> JobRead | None:
        try:
            got = await self._ask(subjects.CATALOG_GET, catalog.GetJob(job_id=job_id, owner=owner),
                                  catalog.GetJobReply)
        except (NoRespondersError, NatsTimeout):
            return None  # no catalog right now: the stream alone still answers
        assert isinstance(got, catalog.GetJobReply)
        if got.job is None:
            return None
        return JobRead(got.job, got.queue_position,
                       estimated_start(got.queue_position, got.mean_job_seconds, got.running_jobs, utcnow()))

    async def get(self, job_id: str, owner: str | None) -> JobRead | None:
        # Both round trips at once: the catalog's row and the stream's newest event.
        read, latest = await asyncio.gather(self._catalog_get(job_id, owner),
                                            last_event(self.js, subjects.job_events(job_id)))
        state = read.state if read else None
        position = read.queue_position if read else None
        starts = read.estimated_start if read else None
        if state is None:
            submitted = await last_event(self.js, subjects.event_subject(job_id, "submitted"))
            if submitted is None or not isinstance(submitted.event, JobSubmitted):
                return None
            if owner is not None and submitted.event.owner != owner:
                return None
            state = new_state(submitted.event, submitted.seq)
        if latest is not None and latest.seq > state.last_seq:
            state = apply(state, latest.event, latest.seq)
        if state.status != "queued":
            position = starts = None
        return JobRead(state, position, starts)

    async def list(self, query: catalog.ListJobs) -> catalog.JobPage:
        page = await self._ask(subjects.CATALOG_LIST, query, catalog.JobPage)
        assert isinstance(page, catalog.JobPage)
        return page

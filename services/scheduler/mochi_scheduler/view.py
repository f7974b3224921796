"""Every scheduler replica's copy of the queues: the job stream's submissions
and finals, and the release stream's releases, applied to a FairShare.

Each stream is read by an ordered consumer from the sequence after the last one
applied, so a restarted loop resumes where it stopped and a new replica rebuilds
everything from the streams (the job stream is the truth; the release stream
says which jobs are out). A follower keeps its copy current, so taking over
costs no rebuild."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy

from mochi_common.event_intake import read_event
from mochi_contracts import subjects
from mochi_contracts.events import FINAL_TYPES, JobStarted, JobSubmitted, event_type
from mochi_contracts.streams import JOBS_STREAM, RELEASE_STREAM
from mochi_scheduler.fair_share import FairShare

log = structlog.get_logger()

# The job events the queues (submissions, finals) and the running metric (starts) read.
_FOLLOWED = frozenset({event_type(JobSubmitted), event_type(JobStarted)}) | FINAL_TYPES


class StreamView:
    def __init__(self, js: Any, model: FairShare):
        self.js = js
        self.model = model
        self.jobs_seq = 0
        self.release_seq = 0
        self.changed = asyncio.Event()

    async def follow_jobs(self) -> None:
        await self._follow(JOBS_STREAM, subjects.ALL_JOB_EVENTS, "jobs_seq", self._apply_job)

    async def follow_releases(self) -> None:
        await self._follow(RELEASE_STREAM, subjects.ALL_RELEASED, "release_seq", self._apply_release)

    async def stream_heads(self) -> tuple[int, int]:
        """The last sequence of each stream that a reader can still be given
        (0 for a stream whose messages all aged out: none will be delivered)."""
        heads = []
        for stream in (JOBS_STREAM, RELEASE_STREAM):
            state = (await self.js.stream_info(stream)).state
            heads.append(int(state.last_seq) if state.messages else 0)
        return heads[0], heads[1]

    async def _follow(self, stream: str, subject: str, seq_attr: str, apply: Any) -> None:
        start = getattr(self, seq_attr) + 1
        log.info("view.follow", stream=stream, from_seq=start)
        sub = await self.js.subscribe(subject, stream=stream, ordered_consumer=True,
                                      deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                      config=ConsumerConfig(opt_start_seq=start))
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except NatsTimeout:
                    continue
                seq = msg.metadata.sequence.stream
                if seq <= getattr(self, seq_attr):
                    continue
                changed = apply(msg, seq)
                setattr(self, seq_attr, seq)
                if changed:
                    self.changed.set()
        finally:
            try:
                await sub.unsubscribe()
            except Exception as err:  # the connection may be gone with the error that ended this run
                log.info("view.unsubscribe_failed", stream=stream, error=repr(err))

    def _apply_job(self, msg: Any, seq: int) -> bool:
        parsed = subjects.parse_event_subject(msg.subject)
        if parsed is None or parsed[1] not in _FOLLOWED:
            return False  # progress, logs, webhooks: nothing the queues or their metrics depend on
        event = read_event("scheduler", msg.subject, msg.data, msg.headers, seq)
        if event is None:
            return False
        if isinstance(event, JobSubmitted):
            self.model.submitted(event.job_id, event.owner, event.request.priority, seq)
        elif isinstance(event, JobStarted):
            self.model.started(event.job_id)
            return False  # a start changes no choice
        else:
            self.model.final(event.job_id)
        return True

    def _apply_release(self, msg: Any, seq: int) -> bool:
        job_id = subjects.released_job_id(msg.subject)
        return job_id is not None and self.model.released(job_id)

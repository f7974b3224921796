"""The leader's one job: while runner lanes wait for work, release the job the
fair share picks, one message per job on `mochi.sched.released.<id>`.

Capacity is read from the released consumer itself: its num_waiting is the
pull requests of runners with a free lane (a runner pulls only then), and its
num_pending the releases no runner has taken yet. Releasing only
num_waiting - num_pending keeps the released-but-not-taken queue no deeper
than the free lanes, so every choice is made at the moment a lane frees and a
burst from one owner waits in the scheduler's queues, not in the stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from nats.js.errors import NotFoundError

from mochi_common.nats_conn import publish_guarded
from mochi_contracts import subjects
from mochi_contracts.events import HDR_MSG_ID
from mochi_contracts.scheduling import JobRelease, encode_release
from mochi_contracts.streams import RELEASE_STREAM, RELEASED_CONSUMER
from mochi_scheduler import metrics
from mochi_scheduler.fair_share import FairShare
from mochi_scheduler.lease import Lease

log = structlog.get_logger()


class Releaser:
    def __init__(self, js: Any, model: FairShare, lease: Lease, scheduler_id: str,
                 owner_label: Callable[[str], str] = str):
        self.js = js
        self.owner_label = owner_label  # bounded metric labels (metrics.OwnerLabels)
        self.model = model
        self.lease = lease
        self.scheduler_id = scheduler_id

    async def free_lanes(self) -> int:
        try:
            info = await self.js.consumer_info(RELEASE_STREAM, RELEASED_CONSUMER)
        except NotFoundError:
            return 0  # no runner in fair mode has started yet
        free = max(0, int(info.num_waiting or 0) - int(info.num_pending or 0))
        metrics.FREE_LANES.set(free)
        return free

    async def release_some(self) -> int:
        """Release up to the free lanes' worth of jobs; the number released."""
        if not self.lease.held() or self.model.next() is None:
            return 0
        released = 0
        for _ in range(await self.free_lanes()):
            job = self.model.next()
            if job is None or not self.lease.held():
                break
            # The model keeps priorities as str; each came from a decoded JobRequest's Priority.
            body = encode_release(JobRelease(job_id=job.job_id, owner=job.owner,
                                             priority=job.priority,  # type: ignore[arg-type]  # see above
                                             submitted_seq=job.seq, scheduler=self.scheduler_id))
            # Create-if-absent: a job released by an earlier leader (or by
            # this one before a lost answer) is not released again.
            seq = await publish_guarded(self.js, RELEASE_STREAM, subjects.released(job.job_id), body,
                                        {HDR_MSG_ID: f"{job.job_id}:released"})
            self.model.released(job.job_id)
            if seq is None:
                log.info("release.already_out", job_id=job.job_id, owner=job.owner)
                continue
            released += 1
            metrics.RELEASED.labels(self.owner_label(job.owner)).inc()
            log.info("release.sent", job_id=job.job_id, owner=job.owner, priority=job.priority, seq=seq)
        return released

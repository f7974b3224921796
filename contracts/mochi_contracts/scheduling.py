"""What the fair-share scheduler writes for the runners (docs/scheduling.md).

A release names a job a runner may take now; the runner reads the job's
submission from the job stream (the one source of truth), so a release
carries only what helps a person reading `nats stream view MOCHI_RELEASED`."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from mochi_contracts.events import JobId, Name, Time, utcnow
from mochi_contracts.jobs import Priority

RANK: Final[dict[str, int]] = {"high": 0, "normal": 1, "low": 2}


class JobRelease(msgspec.Struct, frozen=True, kw_only=True):
    job_id: JobId
    owner: Name
    priority: Priority
    # The job stream sequence of its submission.
    submitted_seq: int
    scheduler: Name
    time: Time = msgspec.field(default_factory=utcnow)


encode_release = msgspec.json.Encoder().encode
decode_release = msgspec.json.Decoder(JobRelease).decode


# Where the work comes from: `fifo` (submissions from `gpu-runners`, positions
# counted in submit order) or `fair` (the scheduler's releases and its order).
Scheduling = Literal["fifo", "fair"]


class QueueOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The leader's plan: the queued jobs in the order it will release them if
    nothing new comes (FairShare.order()), in the KV bucket
    SCHEDULER_QUEUE_BUCKET under SCHEDULER_QUEUE_KEY. Position n is jobs[n-1]."""

    jobs: list[JobId]
    # Jobs released and not final (running or about to), a floor for the lanes.
    out: int = 0
    # Every job in the scheduler's queues: more than len(jobs) when the plan is cut short.
    queued: int = 0
    scheduler: Name
    time: Time = msgspec.field(default_factory=utcnow)


encode_queue_order = msgspec.json.Encoder().encode
decode_queue_order = msgspec.json.Decoder(QueueOrder).decode

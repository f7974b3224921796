"""The HTTP resources: what the API answers and the client library reads.

Defined once: the API encodes these, mochi_cli.client decodes into them, and
the webhooks' bodies carry the same job links."""

from __future__ import annotations

from datetime import datetime

import msgspec

from mochi_contracts.events import VideoInfo
from mochi_contracts.job_state import AttemptStart, Status, WebhookDelivery
from mochi_contracts.jobs import JobRequest


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    step: int
    total_steps: int
    fraction: float
    # This run's pace so far (mochi_contracts.pace); null unless running.
    seconds_per_step: float | None = None
    # What the job is doing now: one of mochi_contracts.phases.PHASES.
    phase: str = "queued"


class Links(msgspec.Struct, frozen=True, kw_only=True):
    self: str
    events: str
    video: str
    cancel: str
    logs: str
    # Always present, like `video`; each answers 404 until the thing exists.
    preview: str  # the live preview of a running job (image/webp; ?still=true: image/png)
    thumbnail: str  # the completed job's poster (image/jpeg)
    thumbnail_clip: str  # a short muted looping clip (video/mp4)


class JobMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds from submit to start (so far, while queued), from start to end
    (so far, while running), per denoising step, and the runner that ran it."""

    queued_seconds: float
    running_seconds: float | None
    seconds_per_step: float | None
    runner: str | None


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    events: list[str]
    # One per job event the webhook was told of, with its attempts so far.
    deliveries: list[WebhookDelivery]


class Job(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: Status
    # The status is one of the endings (FINAL_STATUSES): nothing will change it.
    final: bool
    request: JobRequest
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    queue_position: int | None
    # Estimates: when a queued job should start, when a running one should end
    # (mochi_contracts.pace, from its steps so far).
    estimated_start_at: datetime | None
    estimated_finish_at: datetime | None
    attempts: int
    # Each delivery that started rendering, and the step it started from (more
    # than 0 where it resumed from another attempt's checkpoint).
    attempt_starts: list[AttemptStart] = msgspec.field(default_factory=list)
    runner: str | None
    cancel_requested: bool
    error: str | None
    video: VideoInfo | None
    # When the video is deleted (completed jobs; null when videos are kept for ever).
    expires_at: datetime | None
    metrics: JobMetrics
    webhook: Webhook | None
    links: Links


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    seq: int  # the stream sequence, as the event stream's `id:`
    time: datetime
    level: str
    message: str
    runner: str | None


class LogList(msgspec.Struct, frozen=True, kw_only=True):
    logs: list[LogLine]


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Job]
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None



class JobEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """POST /v1/estimates: how long a job would take here, before it is
    submitted (mochi_contracts.job_cost); every time is null until a job has
    completed here."""

    # Its render, start to finish: steps at the measured pace scaled by its
    # size, plus decode, encode and store.
    work_seconds: float | None
    # Until it would start, behind the running jobs' finishes and the queue.
    queue_seconds: float | None
    estimated_start_at: datetime | None
    estimated_finish_at: datetime | None
    # Far beyond anything this deployment completed (or nothing completed yet):
    # the numbers are a guess.
    beyond_experience: bool
    # Its cost (latent tokens x steps) over the costliest completed job's; null with none.
    times_largest: float | None
    # The completed jobs the pace was measured over.
    measured_jobs: int

def job_links(base: str, job_id: str) -> Links:
    """A job's links under `base` (the API's public URL; empty: relative links)."""
    root = f"{base.rstrip('/')}/v1/jobs/{job_id}"
    return Links(self=root, events=f"{root}/events", video=f"{root}/video", cancel=f"{root}/cancel",
                 logs=f"{root}/logs", preview=f"{root}/preview", thumbnail=f"{root}/thumbnail",
                 thumbnail_clip=f"{root}/thumbnail/clip")

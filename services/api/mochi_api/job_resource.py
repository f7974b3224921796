"""The job as the API shows it: state, progress and links."""

from __future__ import annotations

from datetime import datetime

import msgspec

from mochi_api.estimates import estimated_finish, seconds_per_step
from mochi_contracts.events import VideoInfo
from mochi_contracts.job_state import JobState, Status
from mochi_contracts.jobs import JobRequest


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    step: int
    total_steps: int
    fraction: float
    seconds_per_step: float | None = None


class Links(msgspec.Struct, frozen=True, kw_only=True):
    self: str
    events: str
    video: str
    cancel: str


class Job(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: Status
    request: JobRequest
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    queue_position: int | None
    # Estimates: when a queued job should start, when a running one should end.
    estimated_start_at: datetime | None
    estimated_finish_at: datetime | None
    attempts: int
    runner: str | None
    cancel_requested: bool
    error: str | None
    video: VideoInfo | None
    links: Links


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Job]
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None


def job_links(base: str, job_id: str) -> Links:
    root = f"{base}/v1/jobs/{job_id}"
    return Links(self=root, events=f"{root}/events", video=f"{root}/video", cancel=f"{root}/cancel")


def to_resource(state: JobState, queue_position: int | None, base: str,
                estimated_start_at: datetime | None = None) -> Job:
    total = state.total_steps or state.request.num_inference_steps
    per_step = seconds_per_step(state)
    return Job(
        id=state.id, status=state.status, request=state.request, created_at=state.created_at,
        started_at=state.started_at, finished_at=state.finished_at,
        progress=Progress(step=state.step, total_steps=total,
                          fraction=round(state.step / total, 4) if total else 0.0,
                          seconds_per_step=round(per_step, 4) if per_step is not None else None),
        queue_position=queue_position, estimated_start_at=estimated_start_at,
        estimated_finish_at=estimated_finish(state), attempts=state.attempts, runner=state.runner,
        cancel_requested=state.cancel_requested, error=state.error, video=state.video,
        links=job_links(base, state.id))

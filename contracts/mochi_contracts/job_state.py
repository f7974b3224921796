"""How events fold into a job's state. The catalog projects with this and the
API uses it to lay the newest event over a lagging catalog row."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from mochi_contracts.events import (
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobProgress,
    JobStarted,
    JobSubmitted,
    VideoInfo,
)
from mochi_contracts.jobs import JobRequest

Status = Literal["queued", "running", "completed", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("queued", "running", "completed", "failed", "cancelled")
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class JobState(msgspec.Struct, kw_only=True):
    """A job as the events have told it so far."""

    id: str
    owner: str
    status: Status
    request: JobRequest
    created_at: datetime
    submitted_seq: int
    last_seq: int
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    step: int = 0
    total_steps: int = 0
    attempts: int = 0
    runner: str | None = None
    cancel_requested: bool = False
    error: str | None = None
    video: VideoInfo | None = None


def new_state(event: JobSubmitted, seq: int) -> JobState:
    return JobState(
        id=event.job_id, owner=event.owner, status="queued", request=event.request,
        created_at=event.time, submitted_seq=seq, last_seq=seq, updated_at=event.time,
        total_steps=event.request.num_inference_steps)


def apply(state: JobState, event: JobEvent, seq: int) -> JobState:
    """Fold one event into `state`. Events at or below last_seq change nothing,
    and nothing moves a job out of a final status."""
    if seq <= state.last_seq:
        return state
    state = msgspec.structs.replace(state, last_seq=seq, updated_at=event.time)
    if state.status in FINAL_STATUSES:
        return state
    match event:
        case JobStarted(runner=runner, attempt=attempt):
            return msgspec.structs.replace(
                state, status="running", started_at=state.started_at or event.time,
                runner=runner, attempts=attempt, step=0)
        case JobProgress(step=step, total_steps=total, runner=runner):
            return msgspec.structs.replace(
                state, status="running", step=step, total_steps=total, runner=runner)
        case JobCancelRequested():
            return msgspec.structs.replace(state, cancel_requested=True)
        case JobCompleted(video=video, runner=runner, attempt=attempt):
            return msgspec.structs.replace(
                state, status="completed", finished_at=event.time, video=video,
                runner=runner, attempts=attempt, step=state.total_steps)
        case JobFailed(reason=reason, attempts=attempts):
            return msgspec.structs.replace(
                state, status="failed", finished_at=event.time, error=reason, attempts=attempts)
        case JobCancelled(reason=reason):
            return msgspec.structs.replace(
                state, status="cancelled", finished_at=event.time, error=reason)
    return state

"""How events fold into a job's state. The catalog projects with this and the
API uses it to lay the newest event over a lagging catalog row."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

import msgspec

from mochi_contracts.events import (
    FINAL_TYPES,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobEvent,
    JobExpired,
    JobFailed,
    JobLog,
    JobPhase,
    JobPreview,
    JobProgress,
    JobStarted,
    JobSubmitted,
    VideoInfo,
    WebhookAttempt,
)
from mochi_contracts.jobs import JobRequest

Status = Literal["queued", "running", "completed", "failed", "cancelled", "expired"]
STATUSES: tuple[Status, ...] = get_args(Status)
# A job's status after its final event is that event's type.
FINAL_STATUSES: frozenset[str] = FINAL_TYPES
if not FINAL_STATUSES <= set(STATUSES):
    raise RuntimeError(f"final event types {sorted(FINAL_STATUSES - set(STATUSES))} are not statuses")


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """Where one webhook delivery stands, from its recorded attempts."""

    id: str  # the webhook-id header, the same on every retry
    event_type: str
    status: Literal["delivered", "retrying", "failed"]
    attempts: int
    last_attempt_at: datetime
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None


class AttemptStart(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery that started rendering: who, when, and the step it started
    from (more than 0 where it resumed from a checkpoint)."""

    attempt: int
    runner: str
    started_at: datetime
    from_step: int = 0


# A job is delivered at most max_deliver times (5 by default); the list keeps
# the newest starts should a runaway redelivery loop go on.
MAX_ATTEMPT_STARTS = 20


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
    webhook_deliveries: list[WebhookDelivery] = msgspec.field(default_factory=list)
    # When the newest denoising step was reported (for seconds per step).
    last_step_at: datetime | None = None
    # Each attempt that started rendering, oldest first.
    attempt_starts: list[AttemptStart] = msgspec.field(default_factory=list)
    # The newest phase a runner reported (events.RunnerPhase) while it runs;
    # None before any (resources show queued / finished from the status).
    phase: str | None = None


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
    match event:
        case WebhookAttempt():
            # Deliveries go on after the job's end; they never change its status.
            return msgspec.structs.replace(state, webhook_deliveries=_delivery(state, event))
        case JobLog():
            return state
    if state.status in FINAL_STATUSES:
        return state
    match event:
        case JobStarted(runner=runner, attempt=attempt, from_step=from_step):
            start = AttemptStart(attempt=attempt, runner=runner, started_at=event.time, from_step=from_step)
            return msgspec.structs.replace(
                state, status="running", started_at=state.started_at or event.time,
                runner=runner, attempts=attempt, step=from_step,
                attempt_starts=[*state.attempt_starts, start][-MAX_ATTEMPT_STARTS:],
                phase="encoding_prompt")  # a new attempt first encodes the prompt
        case JobProgress(step=step, total_steps=total, runner=runner):
            # A step ended: the job denoises, whatever phase event is still on its way.
            return msgspec.structs.replace(
                state, status="running", step=step, total_steps=total, runner=runner,
                last_step_at=event.time, phase="denoising")
        case JobPhase(phase=phase, runner=runner):
            return msgspec.structs.replace(state, status="running", phase=phase, runner=runner)
        case JobPreview(runner=runner):
            # Previews are made while the job denoises (the image is in the
            # previews bucket): as the newest event laid over a lagging
            # catalog row, it still says the job runs.
            return msgspec.structs.replace(state, status="running", phase="denoising", runner=runner)
        case JobCancelRequested():
            return msgspec.structs.replace(state, cancel_requested=True)
        case JobCompleted(video=video, runner=runner, attempt=attempt):
            return msgspec.structs.replace(
                state, status="completed", finished_at=event.time, video=video,
                runner=runner, attempts=attempt, step=state.total_steps, phase=None)
        case JobFailed(reason=reason, attempts=attempts):
            return msgspec.structs.replace(
                state, status="failed", finished_at=event.time, error=reason, attempts=attempts,
                phase=None)
        case JobCancelled(reason=reason):
            return msgspec.structs.replace(
                state, status="cancelled", finished_at=event.time, error=reason, phase=None)
        case JobExpired(reason=reason):
            return msgspec.structs.replace(
                state, status="expired", finished_at=event.time, error=reason, phase=None)
    return state


def _delivery(state: JobState, event: WebhookAttempt) -> list[WebhookDelivery]:
    previous = next((d for d in state.webhook_deliveries if d.id == event.delivery_id), None)
    if previous is not None and previous.status == "delivered":
        return state.webhook_deliveries  # a success is never undone
    now = WebhookDelivery(
        id=event.delivery_id, event_type=event.event_type, status=event.outcome,
        attempts=max(event.attempt, previous.attempts if previous else 0),
        last_attempt_at=event.time, last_status_code=event.status_code, last_error=event.error,
        next_attempt_at=event.next_attempt_at)
    if previous is None:
        return [*state.webhook_deliveries, now]
    return [now if d.id == event.delivery_id else d for d in state.webhook_deliveries]

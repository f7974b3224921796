"""The job as the API shows it, built from its folded state (the shapes are
mochi_contracts.resources)."""

from __future__ import annotations

from datetime import datetime, timedelta

from mochi_contracts import pace, phases
from mochi_contracts.events import utcnow
from mochi_contracts.job_state import FINAL_STATUSES, JobState
from mochi_contracts.jobs import DEFAULT_WEBHOOK_EVENTS
from mochi_contracts.resources import Job, JobMetrics, Progress, Webhook, job_links


def video_expires_at(state: JobState, lifetime_s: float) -> datetime | None:
    if state.status != "completed" or state.finished_at is None or lifetime_s <= 0:
        return None
    return state.finished_at + timedelta(seconds=lifetime_s)


def job_metrics(state: JobState, now: datetime | None = None) -> JobMetrics:
    now = now or utcnow()
    end = state.finished_at or now
    queued_until = state.started_at or end
    running = (end - state.started_at).total_seconds() if state.started_at else None
    per_step = pace.seconds_per_step(state)
    return JobMetrics(queued_seconds=round(max((queued_until - state.created_at).total_seconds(), 0.0), 3),
                      running_seconds=round(max(running, 0.0), 3) if running is not None else None,
                      seconds_per_step=round(per_step, 4) if per_step is not None else None,
                      runner=state.runner)


def job_phase(state: JobState) -> str:
    """Queued before a runner starts it, finished after its final event, and
    in between the newest phase a runner reported (denoising until one has)."""
    if state.status in FINAL_STATUSES:
        return phases.FINISHED
    if state.status == "queued":
        return phases.QUEUED
    return state.phase or "encoding_prompt"


def to_resource(state: JobState, queue_position: int | None, base: str,
                estimated_start_at: datetime | None = None, video_lifetime_s: float = 0.0,
                after_steps_pace: float | None = None) -> Job:
    total = state.total_steps or state.request.num_inference_steps
    # Shown while the job runs; its metrics keep the pace it ended with.
    per_step = pace.seconds_per_step(state) if state.status == "running" else None
    return Job(
        id=state.id, status=state.status, final=state.status in FINAL_STATUSES, request=state.request,
        created_at=state.created_at,
        started_at=state.started_at, finished_at=state.finished_at,
        progress=Progress(step=state.step, total_steps=total,
                          fraction=round(state.step / total, 4) if total else 0.0,
                          seconds_per_step=round(per_step, 4) if per_step is not None else None,
                          phase=job_phase(state)),
        queue_position=queue_position, estimated_start_at=estimated_start_at,
        estimated_finish_at=pace.estimated_finish(state, after_steps_pace), attempts=state.attempts,
        attempt_starts=state.attempt_starts, runner=state.runner,
        cancel_requested=state.cancel_requested, error=state.error, video=state.video,
        expires_at=video_expires_at(state, video_lifetime_s), metrics=job_metrics(state),
        webhook=Webhook(url=state.request.webhook_url,
                        events=list(state.request.webhook_events or DEFAULT_WEBHOOK_EVENTS),
                        deliveries=state.webhook_deliveries) if state.request.webhook_url else None,
        links=job_links(base, state.id))

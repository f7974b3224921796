"""Valid events of one job for the unit tests, built the way publishers build them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import settings
from hypothesis import strategies as st

from mochi_contracts.events import (
    JobCancelled, JobCancelRequested, JobCompleted, JobEvent, JobExpired, JobFailed, JobLog, JobProgress,
    JobStarted, JobSubmitted, VideoInfo, WebhookAttempt)
from mochi_contracts.jobs import JobRequest
from mochi_contracts.storage import video_key

JOB = "0123456789abcdef0123456789abcdef"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEPS = 8


def at(seq: int) -> datetime:
    return T0 + timedelta(seconds=seq)


def submitted(job_id: str = JOB, steps: int = STEPS) -> JobSubmitted:
    return JobSubmitted(job_id=job_id, time=at(1), owner="alice",
                        request=JobRequest(prompt="a cat", width=64, height=64, num_frames=7,
                                           num_inference_steps=steps, seed=1))


def completed(seq: int, job_id: str = JOB) -> JobCompleted:
    return JobCompleted(job_id=job_id, time=at(seq), runner="r1", attempt=1,
                        video=VideoInfo(key=video_key(job_id), size_bytes=1000, width=64, height=64,
                                        num_frames=7, fps=30))


Outcome = Literal["delivered", "retrying", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("delivered", "retrying", "failed")


def attempt(seq: int, delivery: str, n: int, outcome: Outcome, job_id: str = JOB) -> WebhookAttempt:
    return WebhookAttempt(job_id=job_id, time=at(seq), delivery_id=delivery, event_type="completed",
                          attempt=n, outcome=outcome, status_code=200 if outcome == "delivered" else 503)


def one_of_kinds(seq: int, kind: str, job_id: str = JOB) -> JobEvent:
    """An event of `kind` at stream sequence `seq` (its time follows the sequence)."""
    t = at(seq)
    match kind:
        case "started":
            return JobStarted(job_id=job_id, time=t, runner="r1", attempt=1)
        case "progress":
            return JobProgress(job_id=job_id, time=t, step=min(seq % STEPS + 1, STEPS), total_steps=STEPS,
                               runner="r1")
        case "cancel_requested":
            return JobCancelRequested(job_id=job_id, time=t, requested_by="alice")
        case "completed":
            return completed(seq, job_id)
        case "failed":
            return JobFailed(job_id=job_id, time=t, reason="boom", attempts=3)
        case "cancelled":
            return JobCancelled(job_id=job_id, time=t, reason="asked")
        case "expired":
            return JobExpired(job_id=job_id, time=t, reason="deadline")
        case "log":
            return JobLog(job_id=job_id, time=t, level="info", message="hello", runner="r1")
        case "webhook":
            return attempt(seq, f"msg_{job_id}_{seq % 3}", seq % 4 + 1, OUTCOMES[seq % 3], job_id)
    raise ValueError(kind)


# No per-example deadline: two shared cores make timings noise, not a finding.
pure = settings(deadline=None, max_examples=80)

KINDS = ("started", "progress", "cancel_requested", "completed", "failed", "cancelled", "expired", "log",
         "webhook")
# Kinds of what may follow a submission, in any order a careless or hostile publisher writes them.
later_kinds = st.lists(st.sampled_from(KINDS), max_size=30)

"""Job events: the source of truth. JSON on the wire, one struct per event type.

Every event carries its job id, a UTC time and the schema version it was
written with, so a consumer can refuse what it does not understand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal, get_args

import msgspec

from mochi_contracts.jobs import DEFAULT_WEBHOOK_EVENTS, Fps, Frames, JobRequest, Side
from mochi_contracts.phases import RUNNER_PHASES

SCHEMA_VERSION: Final = 1

# Headers that let a person read `nats stream view` without decoding JSON.
HDR_EVENT_TYPE: Final = "Mochi-Event-Type"
HDR_SCHEMA: Final = "Mochi-Schema-Version"
HDR_JOB_ID: Final = "Mochi-Job-Id"
HDR_MSG_ID: Final = "Nats-Msg-Id"


def utcnow() -> datetime:
    return datetime.now(UTC)


# Bounds on everything an event may claim: an event is read by every consumer,
# so a value no honest publisher writes is refused at decoding, not met later
# as a 500 or a runaway loop. Publishers clip free text to MAX_TEXT (clip()).
MAX_TEXT: Final = 4000
MAX_NAME: Final = 200
MAX_STEPS: Final = 1000
MAX_ATTEMPTS: Final = 100_000
Time = Annotated[datetime, msgspec.Meta(tz=True)]
# A job id, for msgspec's fields and subjects.is_job_id alike. `(?!\n)`:
# Python's `$` also matches before a final newline (msgspec matches with
# Python's re), so without it "<id>\n" passed; the lookahead reads the same in
# JSON Schema's ECMA dialect.
JOB_ID_REGEX: Final = r"^[0-9a-f]{32}(?!\n)$"
JobId = Annotated[str, msgspec.Meta(pattern=JOB_ID_REGEX)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Step = Annotated[int, msgspec.Meta(ge=0, le=MAX_STEPS)]
TotalSteps = Annotated[int, msgspec.Meta(ge=1, le=MAX_STEPS)]
Attempt = Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)]
Attempts = Annotated[int, msgspec.Meta(ge=0, le=MAX_ATTEMPTS)]


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Free text cut to what an event may carry (an error's message can be long)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    job_id: JobId
    time: Time = msgspec.field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION


class JobSubmitted(Event, frozen=True, tag="submitted"):
    request: JobRequest
    owner: Name


class JobStarted(Event, frozen=True, tag="started"):
    runner: Name
    attempt: Attempt
    # The denoising steps this attempt did not render: it resumed from a
    # checkpoint saved after that many (0: it renders from the start; an
    # event written before checkpoints reads as 0).
    from_step: Step = 0


class JobProgress(Event, frozen=True, tag="progress"):
    step: Step
    total_steps: TotalSteps
    runner: Name


# The phases a runner reports (phases.RUNNER_PHASES; queued and finished follow
# from the job's status): a Literal, so a JobPhase can carry no other word.
RunnerPhase = Literal["encoding_prompt", "denoising", "decoding", "encoding_video", "storing"]
if RUNNER_PHASES != get_args(RunnerPhase):
    raise RuntimeError(f"events.RunnerPhase {get_args(RunnerPhase)} is not phases.RUNNER_PHASES {RUNNER_PHASES}")
# A live preview is a few small frames; anything near this is no preview.
MAX_PREVIEW_BYTES: Final = 64 * 1024 * 1024


class JobPhase(Event, frozen=True, tag="phase"):
    """The runner began one phase of the job (Progress.phase)."""

    phase: RunnerPhase
    runner: Name


class JobPreview(Event, frozen=True, tag="preview"):
    """A new live preview of the render, after `step` of `total_steps`, is in
    the previews bucket (streams.PREVIEW_BUCKET, object = job id). The image
    itself never travels on the job stream: only its size."""

    step: Step
    total_steps: TotalSteps
    bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_PREVIEW_BYTES)]
    runner: Name


class JobCancelRequested(Event, frozen=True, tag="cancel_requested"):
    requested_by: Name


class VideoInfo(msgspec.Struct, frozen=True, kw_only=True):
    # Must be storage.video_key(job_id): checked at decoding, and readers derive
    # the key from the job id anyway, so no event can point at another's video.
    key: Name
    size_bytes: Annotated[int, msgspec.Meta(ge=0, le=2**40)]
    content_type: Literal["video/mp4"] = "video/mp4"
    width: Side
    height: Side
    num_frames: Frames
    fps: Fps


class JobCompleted(Event, frozen=True, tag="completed"):
    video: VideoInfo
    runner: Name
    attempt: Attempt


class JobFailed(Event, frozen=True, tag="failed"):
    reason: Text
    attempts: Attempts


class JobCancelled(Event, frozen=True, tag="cancelled"):
    reason: Text


class JobExpired(Event, frozen=True, tag="expired"):
    """Its deadline passed before any runner started it; no GPU touched it."""

    reason: Text


class JobLog(Event, frozen=True, tag="log"):
    """One line a runner wrote about this job (and no other)."""

    level: Literal["debug", "info", "warning", "error"]
    message: Text
    runner: Name | None = None


class WebhookAttempt(Event, frozen=True, tag="webhook"):
    """One try at delivering one webhook (`delivery_id` is its webhook-id, the
    same on every retry). `outcome`: delivered; retrying (a retry is due at
    next_attempt_at); failed (a 4xx other than 408/429, a redirect, or the
    retry window is over)."""

    delivery_id: Name
    event_type: Name
    attempt: Attempt
    outcome: Literal["delivered", "retrying", "failed"]
    status_code: Annotated[int, msgspec.Meta(ge=0, le=999)] | None = None
    error: Text | None = None
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=10**9)] = 0
    next_attempt_at: Time | None = None


JobEvent = (JobSubmitted | JobStarted | JobProgress | JobPhase | JobPreview | JobCancelRequested | JobCompleted
            | JobFailed | JobCancelled | JobExpired | JobLog | WebhookAttempt)

# The endings: a job has exactly one of these, written with a create-if-absent
# guard. Their types are also the job's final statuses (job_state.FINAL_STATUSES).
FINAL_EVENTS: Final = (JobCompleted, JobFailed, JobCancelled, JobExpired)


def event_type(event: JobEvent | type[JobEvent]) -> str:
    cls = event if isinstance(event, type) else type(event)
    return str(cls.__struct_config__.tag)


FINAL_TYPES: Final[frozenset[str]] = frozenset(event_type(cls) for cls in FINAL_EVENTS)
# jobs.py is imported here and cannot import this, so its default webhook filter,
# "the endings", is held to them here: a new ending fails at import, not in a webhook.
if frozenset(DEFAULT_WEBHOOK_EVENTS) != FINAL_TYPES:
    raise RuntimeError(f"jobs.DEFAULT_WEBHOOK_EVENTS {sorted(DEFAULT_WEBHOOK_EVENTS)} are not the final "
                       f"event types {sorted(FINAL_TYPES)}")

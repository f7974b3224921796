"""Job events: the source of truth. JSON on the wire, one struct per event type.

Every event carries its job id, a UTC time and the schema version it was
written with, so a consumer can refuse what it does not understand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

from mochi_contracts.jobs import JobRequest

SCHEMA_VERSION: Final = 1

# Headers that let a person read `nats stream view` without decoding JSON.
HDR_EVENT_TYPE: Final = "Mochi-Event-Type"
HDR_SCHEMA: Final = "Mochi-Schema-Version"
HDR_JOB_ID: Final = "Mochi-Job-Id"
HDR_MSG_ID: Final = "Nats-Msg-Id"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    job_id: str
    time: datetime = msgspec.field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION


class JobSubmitted(Event, tag="submitted"):
    request: JobRequest
    owner: str


class JobStarted(Event, tag="started"):
    runner: str
    attempt: int


class JobProgress(Event, tag="progress"):
    step: int
    total_steps: int
    runner: str


class JobCancelRequested(Event, tag="cancel_requested"):
    requested_by: str


class VideoInfo(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    size_bytes: int
    content_type: str = "video/mp4"
    width: int
    height: int
    num_frames: int
    fps: int


class JobCompleted(Event, tag="completed"):
    video: VideoInfo
    runner: str
    attempt: int


class JobFailed(Event, tag="failed"):
    reason: str
    attempts: int


class JobCancelled(Event, tag="cancelled"):
    reason: str


class JobExpired(Event, tag="expired"):
    """Its deadline passed before any runner started it; no GPU touched it."""

    reason: str


class JobLog(Event, tag="log"):
    """One line a runner wrote about this job (and no other)."""

    level: Literal["debug", "info", "warning", "error"]
    message: str
    runner: str | None = None


class WebhookAttempt(Event, tag="webhook"):
    """One try at delivering one webhook (`delivery_id` is its webhook-id, the
    same on every retry). `outcome`: delivered; retrying (a retry is due at
    next_attempt_at); failed (a 4xx other than 408/429, a redirect, or the
    retry window is over)."""

    delivery_id: str
    event_type: str
    attempt: int
    outcome: Literal["delivered", "retrying", "failed"]
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    next_attempt_at: datetime | None = None


JobEvent = (JobSubmitted | JobStarted | JobProgress | JobCancelRequested | JobCompleted | JobFailed
            | JobCancelled | JobExpired | JobLog | WebhookAttempt)

EventType = Literal["submitted", "started", "progress", "cancel_requested", "completed", "failed", "cancelled",
                    "expired", "log", "webhook"]
EVENT_TYPES: Final[tuple[str, ...]] = (
    "submitted", "started", "progress", "cancel_requested", "completed", "failed", "cancelled",
    "expired", "log", "webhook")
# A job has exactly one of these, written with a create-if-absent guard.
FINAL_TYPES: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled", "expired"})


def event_type(event: JobEvent) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]


class UnreadableEvent(Exception):
    """A message on the job stream that this code cannot decode."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(JobEvent)


def encode_event(event: JobEvent) -> tuple[bytes, dict[str, str]]:
    """Body and headers for publishing `event`."""
    headers = {
        HDR_EVENT_TYPE: event_type(event),
        HDR_SCHEMA: str(event.schema_version),
        HDR_JOB_ID: event.job_id,
        "Content-Type": "application/json",
    }
    return _encoder.encode(event), headers


def decode_event(data: bytes, headers: dict[str, str] | None = None) -> JobEvent:
    """Decode one event; raise UnreadableEvent for garbage or a newer schema."""
    version = (headers or {}).get(HDR_SCHEMA)
    if version is not None and version != str(SCHEMA_VERSION):
        raise UnreadableEvent(f"schema version {version} is not {SCHEMA_VERSION}")
    try:
        event = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise UnreadableEvent(str(err)) from None
    if event.schema_version != SCHEMA_VERSION:
        raise UnreadableEvent(f"schema version {event.schema_version} is not {SCHEMA_VERSION}")
    return event

"""The one boundary between bytes on the job stream and job events.

Every consumer (catalog, API reads and SSE, runner, dispatcher) decodes through
`decode_event`, which checks the body against the subject it arrived on. The
subject is what NATS permissions and the create-if-absent guard on
`mochi.jobs.<id>.final.*` protect; the body is whatever a publisher wrote. So an
event's type and job id come from its subject and the body must agree, times
must carry a timezone, numbers and strings are bounded (events.py), and a
completed event's video key must be the one derived from its job id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import msgspec

from mochi_contracts import subjects
from mochi_contracts.events import (
    HDR_EVENT_TYPE, HDR_JOB_ID, HDR_SCHEMA, SCHEMA_VERSION, JobCompleted, JobEvent, JobPreview, JobProgress,
    JobSubmitted, event_type)
from mochi_contracts.jobs import semantic_errors
from mochi_contracts.storage import video_key

# Why an event was refused, as a short fixed word (a metric label).
RejectKind = Literal["subject", "header", "json", "schema", "mismatch", "bounds"]
MAX_EVENT_BYTES: Final = 256 * 1024  # the job stream's max_msg_size


class UnreadableEvent(Exception):
    """A message on the job stream that no consumer may act on. `job_id` is the
    job its subject names (None if the subject names none), so a consumer can
    show the refusal on that job's page."""

    def __init__(self, kind: RejectKind, reason: str, job_id: str | None = None):
        super().__init__(reason)
        self.kind: RejectKind = kind
        self.job_id = job_id


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(JobEvent)


def encode_event(event: JobEvent) -> tuple[bytes, dict[str, str]]:
    """Body and readable headers for publishing `event` on its own subject."""
    headers = {
        HDR_EVENT_TYPE: event_type(event),
        HDR_SCHEMA: str(event.schema_version),
        HDR_JOB_ID: event.job_id,
        "Content-Type": "application/json",
    }
    return _encoder.encode(event), headers


def _text(value: object, limit: int = 120) -> str:
    # Refusal reasons quote what the publisher wrote: keep them short and printable.
    return repr(value)[:limit]


def decode_event(data: bytes, headers: Mapping[str, str] | None, subject: str) -> JobEvent:
    """The event that `data` on `subject` stands for; UnreadableEvent for
    anything else (garbage, a newer schema, a body that disagrees with its
    subject or headers, a value out of bounds)."""
    parsed = subjects.parse_event_subject(subject)
    if parsed is None:
        raise UnreadableEvent("subject", f"no event may be published on {_text(subject)}")
    job_id, kind = parsed
    headers = headers or {}
    version = headers.get(HDR_SCHEMA)
    if version is not None and version != str(SCHEMA_VERSION):
        raise UnreadableEvent("schema", f"schema version {_text(version)} is not {SCHEMA_VERSION}", job_id)
    for name, want in ((HDR_EVENT_TYPE, kind), (HDR_JOB_ID, job_id)):
        have = headers.get(name)
        if have is not None and have != want:
            raise UnreadableEvent("header", f"header {name} is {_text(have)}, the subject says {want}", job_id)
    if len(data) > MAX_EVENT_BYTES:
        raise UnreadableEvent("bounds", f"{len(data)} bytes is more than an event may have", job_id)
    try:
        event = _decoder.decode(data)
    except msgspec.ValidationError as err:
        raise UnreadableEvent("bounds", str(err)[:300], job_id) from None
    except msgspec.DecodeError as err:
        raise UnreadableEvent("json", str(err)[:300], job_id) from None
    if event.schema_version != SCHEMA_VERSION:
        raise UnreadableEvent("schema", f"schema version {event.schema_version} is not {SCHEMA_VERSION}", job_id)
    if event_type(event) != kind:
        raise UnreadableEvent("mismatch", f"a {event_type(event)} body on a {kind} subject", job_id)
    if event.job_id != job_id:
        raise UnreadableEvent("mismatch", f"the body names job {event.job_id}, the subject {job_id}", job_id)
    _check_meaning(event)
    return event


def _check_meaning(event: JobEvent) -> None:
    """What the per-field bounds cannot say."""
    match event:
        case JobProgress(step=step, total_steps=total) | JobPreview(step=step, total_steps=total) if step > total:
            raise UnreadableEvent("bounds", f"step {step} is past total_steps {total}", event.job_id)
        case JobCompleted(video=video) if video.key != video_key(event.job_id):
            raise UnreadableEvent("bounds", f"video key {_text(video.key)} is not this job's", event.job_id)
        case JobSubmitted(request=request) if semantic_errors(request) or request.seed is None:
            # The API draws the seed at submit, so a redelivery renders the same video.
            problems = "; ".join(f"{e.field}: {e.message}" for e in semantic_errors(request)) or "no seed"
            raise UnreadableEvent("bounds", f"request breaks the contract: {problems}", event.job_id)

"""The one boundary for events, fed what any publisher could write: arbitrary
bytes, headers and subjects, and real events bent out of shape. It returns an
event whose type and job id are the subject's, or raises UnreadableEvent;
never anything else."""

from __future__ import annotations

import json
from typing import get_args

import msgspec
import pytest
from hypothesis import HealthCheck, event as note, given, settings
from hypothesis import strategies as st

from mochi_contracts import subjects
from mochi_contracts.event_codec import MAX_EVENT_BYTES, UnreadableEvent, decode_event, encode_event
from mochi_contracts.events import (
    HDR_EVENT_TYPE, HDR_JOB_ID, HDR_SCHEMA, MAX_STEPS, JobCompleted, JobEvent, JobPhase, JobPreview, JobProgress,
    event_type)
from mochi_contracts.phases import RUNNER_PHASES
from mochi_contracts.storage import video_key

from .events import JOB, KINDS, at, one_of_kinds, submitted

REJECT_KINDS = {"subject", "header", "json", "schema", "mismatch", "bounds"}
# The runner's live kinds, which the job-state tests' KINDS leave out.
RUNNER_KINDS = ("phase", "preview")
job_ids = st.sampled_from([JOB, "f" * 32, "0" * 32]) | st.text("0123456789abcdef", min_size=32, max_size=32)


@st.composite
def runner_event(draw: st.DrawFn, kind: str, job_id: str) -> JobEvent:
    seq = draw(st.integers(2, 500))
    if kind == "phase":
        return JobPhase(job_id=job_id, time=at(seq), phase=draw(st.sampled_from(RUNNER_PHASES)), runner="r1")
    total = draw(st.integers(1, MAX_STEPS))
    return JobPreview(job_id=job_id, time=at(seq), step=draw(st.integers(0, total)), total_steps=total,
                      bytes=draw(st.integers(1, 10**6)), runner="r1")


def subject_of(event: JobEvent, seq: int = 3) -> str:
    kind = event_type(event)
    if kind == "webhook":
        return subjects.webhook_attempts(event.job_id, seq)
    return subjects.event_subject(event.job_id, kind)


@st.composite
def real_events(draw: st.DrawFn) -> JobEvent:
    job_id = draw(job_ids)
    kind = draw(st.sampled_from(("submitted", *KINDS, *RUNNER_KINDS)))
    if kind in RUNNER_KINDS:
        return draw(runner_event(kind, job_id))
    return submitted(job_id) if kind == "submitted" else one_of_kinds(draw(st.integers(2, 500)), kind, job_id)


def test_the_strategies_cover_every_event_type():
    # A new event type must be fed to the boundary here too.
    assert {event_type(cls) for cls in get_args(JobEvent)} == {"submitted", *KINDS, *RUNNER_KINDS}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


@st.composite
def bent(draw: st.DrawFn) -> bytes:
    """A real event's JSON with one field replaced, removed or added."""
    body = msgspec.to_builtins(draw(real_events()))
    key = draw(st.sampled_from([*body, "extra", "type", "job_id", "time", "schema_version"]))
    action = draw(st.sampled_from(["replace", "remove"]))
    if action == "remove":
        body.pop(key, None)
    else:
        body[key] = draw(json_values | st.sampled_from(["2026-01-01T00:00:00", "completed", "webhook", JOB]))
    return json.dumps(body).encode()


@st.composite
def stretched(draw: st.DrawFn, event: JobEvent) -> bytes:
    """`event` with fields each within bounds but not together: a completed
    event pointing at another job's video (or any key), a step past its total."""
    body = msgspec.to_builtins(event)
    if "video" in body:
        body["video"]["key"] = draw(st.builds(video_key, job_ids) | st.text(max_size=40))
    if "total_steps" in body:
        body["step"] = body["total_steps"] + draw(st.integers(1, 5))
    return json.dumps(body).encode()


@st.composite
def flipped(draw: st.DrawFn) -> bytes:
    """A real event's bytes with a few bytes overwritten."""
    data = bytearray(encode_event(draw(real_events()))[0])
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str] | None, str]:
    event = draw(real_events())
    body, real_headers = encode_event(event)
    data = draw(st.sampled_from([body]) | st.binary(max_size=300) | bent() | flipped() | stretched(event)
                | json_values.map(lambda v: json.dumps(v).encode()))
    subject = draw(st.sampled_from([subject_of(event)]) | st.builds(subject_of, real_events())
                   | st.text(max_size=60) | st.builds(lambda j, rest: f"mochi.jobs.{j}.{rest}", job_ids,
                                                       st.text(max_size=20)))
    header_values = st.text(max_size=40) | st.sampled_from([*real_headers.values(), "1", "2", JOB])
    headers = draw(st.none() | st.just(real_headers) | st.dictionaries(
        st.sampled_from([HDR_EVENT_TYPE, HDR_SCHEMA, HDR_JOB_ID, "Content-Type", "Nats-Msg-Id"]) | st.text(max_size=20),
        header_values, max_size=5))
    return data, headers, subject


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_an_event_that_matches_its_subject_or_unreadable_never_else(delivery):
    data, headers, subject = delivery
    parsed = subjects.parse_event_subject(subject)
    try:
        event = decode_event(data, headers, subject)
    except UnreadableEvent as err:
        note(f"refused: {err.kind}")
        assert err.kind in REJECT_KINDS
        assert err.job_id == (parsed[0] if parsed else None)
        assert str(err) and len(str(err)) <= 400
        return
    note("decoded")
    assert parsed is not None
    assert (event.job_id, event_type(event)) == parsed
    assert_meaningful(event)


def assert_meaningful(event: JobEvent) -> None:
    """What every event that passes the boundary may be relied on for."""
    assert event.time.tzinfo is not None
    if isinstance(event, (JobProgress, JobPreview)):
        assert 0 <= event.step <= event.total_steps <= MAX_STEPS
    if isinstance(event, JobCompleted):
        assert event.video.key == video_key(event.job_id)


@settings(deadline=None, max_examples=80)
@given(st.binary(max_size=2000), st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=6),
       st.text(max_size=100))
def test_arbitrary_bytes_headers_and_subjects(data, headers, subject):
    try:
        event = decode_event(data, headers, subject)
    except UnreadableEvent:
        return
    assert (event.job_id, event_type(event)) == subjects.parse_event_subject(subject)
    assert_meaningful(event)


@settings(deadline=None, max_examples=80)
@given(real_events())
def test_what_encode_event_writes_decodes_to_the_same_event(event):
    body, headers = encode_event(event)
    assert decode_event(body, headers, subject_of(event)) == event
    assert decode_event(body, None, subject_of(event)) == event


@settings(deadline=None, max_examples=80)
@given(real_events(), real_events())
def test_a_body_on_another_jobs_or_types_subject_is_a_mismatch(event, other):
    if (event.job_id, event_type(event)) == (other.job_id, event_type(other)):
        return
    body, _ = encode_event(event)
    with pytest.raises(UnreadableEvent) as err:
        decode_event(body, None, subject_of(other))
    assert err.value.kind == "mismatch" and err.value.job_id == other.job_id


@settings(deadline=None, max_examples=80)
@given(st.data(), real_events().filter(lambda e: event_type(e) in ("completed", "progress", "preview")))
def test_fields_that_disagree_with_each_other_are_refused(data, event):
    body = data.draw(stretched(event))
    if event_type(event) == "completed" and msgspec.json.decode(body)["video"]["key"] == video_key(event.job_id):
        return  # drew the job's own key
    with pytest.raises(UnreadableEvent) as err:
        decode_event(body, None, subject_of(event))
    assert (err.value.kind, err.value.job_id) == ("bounds", event.job_id)


def test_oversized_and_newer_schema_refused_by_kind():
    body, headers = encode_event(submitted())
    subject = subject_of(submitted())
    with pytest.raises(UnreadableEvent) as err:
        decode_event(b" " * (MAX_EVENT_BYTES + 1), None, subject)
    assert err.value.kind == "bounds"
    with pytest.raises(UnreadableEvent) as err:
        decode_event(body, {**headers, HDR_SCHEMA: "2"}, subject)
    assert err.value.kind == "schema"
    with pytest.raises(UnreadableEvent) as err:
        decode_event(body, headers, "mochi.jobs.nope")
    assert (err.value.kind, err.value.job_id) == ("subject", None)

"""The job request contract: defaults, bounds and field naming."""

import msgspec
import pytest

from mochi_contracts import subjects
from mochi_contracts.event_codec import UnreadableEvent, decode_event, encode_event
from mochi_contracts.events import JobProgress, JobSubmitted
from mochi_contracts.jobs import InvalidRequest, JobRequest, decode_job_request, limits


def test_defaults_are_mochi_reference_settings():
    req = decode_job_request(b'{"prompt": "a cat"}')
    assert (req.width, req.height, req.num_frames) == (848, 480, 163)
    assert (req.num_inference_steps, req.guidance_scale, req.fps) == (64, 4.5, 30)


@pytest.mark.parametrize(("body", "field"), [
    (b'{"prompt": "x", "num_frames": 12}', "num_frames"),
    (b'{"prompt": "x", "num_frames": 169}', "num_frames"),
    (b'{"prompt": "x", "width": 850}', "width"),
    (b'{"prompt": "x", "height": 32}', "height"),
    (b'{"prompt": "x", "num_inference_steps": 1}', "num_inference_steps"),
    (b'{"prompt": "x", "guidance_scale": 21}', "guidance_scale"),
    (b'{"prompt": ""}', "prompt"),
    (b'{"width": 64}', "prompt"),
    (b'{"prompt": "x", "colour": "red"}', "colour"),
    (b'not json', "body"),
])
def test_bad_requests_name_their_field(body, field):
    with pytest.raises(InvalidRequest) as err:
        decode_job_request(body)
    assert err.value.errors[0].field == field


def test_every_6k_plus_1_frame_count_is_accepted():
    for frames in range(1, 164, 6):
        assert decode_job_request(f'{{"prompt": "x", "num_frames": {frames}}}'.encode()).num_frames == frames


def test_limits_show_bounds_for_clients():
    lim = limits()
    assert lim["width"]["multipleOf"] == 16
    assert lim["num_frames"]["maximum"] == 163


def test_events_round_trip_with_readable_headers():
    event = JobProgress(job_id="a" * 32, step=3, total_steps=64, runner="r1")
    body, headers = encode_event(event)
    assert headers["Mochi-Event-Type"] == "progress"
    assert b'"type":"progress"' in body
    assert decode_event(body, headers, subjects.event_subject(event.job_id, "progress")) == event


def test_unknown_schema_version_is_refused():
    event = JobSubmitted(job_id="b" * 32, request=JobRequest(prompt="x", seed=1), owner="o")
    body, headers = encode_event(event)
    subject = subjects.event_subject(event.job_id, "submitted")
    assert decode_event(body, headers, subject) == event
    with pytest.raises(UnreadableEvent):
        decode_event(body, {**headers, "Mochi-Schema-Version": "99"}, subject)
    newer = msgspec.json.encode({**msgspec.json.decode(body), "schema_version": 2})
    with pytest.raises(UnreadableEvent):
        decode_event(newer, None, subject)


def test_subjects_put_final_events_under_one_guarded_token():
    jid = "c" * 32
    assert subjects.event_subject(jid, "completed") == f"mochi.jobs.{jid}.final.completed"
    assert subjects.event_subject(jid, "progress") == f"mochi.jobs.{jid}.progress"
    with pytest.raises(ValueError):
        subjects.event_subject("x.>", "progress")


JOB, OTHER = "d" * 32, "e" * 32


def _completed_body(job_id: str, key: str | None = None) -> bytes:
    from mochi_contracts.events import JobCompleted, VideoInfo
    from mochi_contracts.storage import video_key

    video = VideoInfo(key=key or video_key(job_id), size_bytes=10, width=64, height=64, num_frames=7, fps=30)
    return encode_event(JobCompleted(job_id=job_id, video=video, runner="r", attempt=1))[0]


@pytest.mark.parametrize(("subject", "body", "kind"), [
    # A completed body on the log subject: the subject decides, and disagrees.
    (f"mochi.jobs.{JOB}.log", _completed_body(JOB), "mismatch"),
    # A body naming another job than its subject.
    (f"mochi.jobs.{JOB}.final.completed", _completed_body(OTHER), "mismatch"),
    # Another job's video key.
    (f"mochi.jobs.{JOB}.final.completed", _completed_body(JOB, f"videos/ee/{OTHER}.mp4"), "bounds"),
    # A time without a timezone.
    (f"mochi.jobs.{JOB}.log", b'{"type":"log","job_id":"' + JOB.encode() + b'","time":"2026-01-01T00:00:00",'
     b'"level":"info","message":"x"}', "bounds"),
    # Bytes that are not UTF-8.
    (f"mochi.jobs.{JOB}.log", b'{"type":"log","job_id":"' + JOB.encode() + b'","level":"info","message":"\xff"}',
     "json"),
    # A step past the total, an integer past any bound.
    (f"mochi.jobs.{JOB}.progress", b'{"type":"progress","job_id":"' + JOB.encode() + b'","step":9,"total_steps":8,'
     b'"runner":"r"}', "bounds"),
    (f"mochi.jobs.{JOB}.progress", b'{"type":"progress","job_id":"' + JOB.encode() + b'","step":' + b"9" * 400
     + b',"total_steps":8,"runner":"r"}', "bounds"),
    # Subjects no event may have.
    (f"mochi.jobs.{JOB}.final.log", b"{}", "subject"),
    (f"mochi.jobs.{JOB}.webhook.１２", b"{}", "subject"),
    ("mochi.jobs.not-a-job.log", b"{}", "subject"),
])
def test_the_boundary_refuses_what_the_subject_does_not_allow(subject, body, kind):
    with pytest.raises(UnreadableEvent) as err:
        decode_event(body, None, subject)
    assert err.value.kind == kind
    if kind != "subject":
        assert err.value.job_id == JOB


def test_headers_must_agree_with_the_subject():
    event = JobProgress(job_id=JOB, step=1, total_steps=8, runner="r")
    body, headers = encode_event(event)
    subject = subjects.event_subject(JOB, "progress")
    with pytest.raises(UnreadableEvent) as err:
        decode_event(body, {**headers, "Mochi-Event-Type": "completed"}, subject)
    assert err.value.kind == "header"
    assert decode_event(body, {}, subject) == event

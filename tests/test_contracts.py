"""The job request contract: defaults, bounds and field naming."""

import msgspec
import pytest

from mochi_contracts import subjects
from mochi_contracts.event_codec import UnreadableEvent, decode_event, encode_event
from mochi_contracts.events import JobId, JobProgress, JobSubmitted
from mochi_contracts.jobs import JobRequest, semantic_errors


def _request(body: bytes) -> JobRequest:
    # As the API decodes a submit body: msgspec, strictly, against the contract.
    return msgspec.json.decode(body, type=JobRequest, strict=True)


def test_defaults_are_mochi_reference_settings():
    req = _request(b'{"prompt": "a cat"}')
    assert (req.width, req.height, req.num_frames) == (848, 480, 163)
    assert (req.num_inference_steps, req.guidance_scale, req.fps) == (64, 4.5, 30)


@pytest.mark.parametrize(("body", "path"), [
    (b'{"prompt": "x", "num_frames": 169}', "num_frames"),
    (b'{"prompt": "x", "width": 850}', "width"),
    (b'{"prompt": "x", "height": 32}', "height"),
    (b'{"prompt": "x", "num_inference_steps": 1}', "num_inference_steps"),
    (b'{"prompt": "x", "guidance_scale": 21}', "guidance_scale"),
    (b'{"prompt": ""}', "prompt"),
    (b'{"prompt": "x", "colour": "red"}', "colour"),
])
def test_bounds_are_in_the_contract(body, path):
    with pytest.raises(msgspec.ValidationError, match=path):
        _request(body)


def test_only_6k_plus_1_frame_counts_pass_the_semantic_check():
    for frames in range(1, 164):
        errors = semantic_errors(_request(f'{{"prompt": "x", "num_frames": {frames}}}'.encode()))
        assert (errors == []) == ((frames - 1) % 6 == 0), frames
    assert [e.field for e in semantic_errors(_request(b'{"prompt": "   "}'))] == ["prompt"]


def test_bounds_reach_clients_through_the_schema():
    props = msgspec.json.schema(JobRequest)["$defs"]["JobRequest"]["properties"]
    assert props["width"]["multipleOf"] == 16
    assert props["num_frames"]["maximum"] == 163


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


def test_a_job_id_is_exactly_32_hex_digits():
    # msgspec matches patterns with Python's re, where `$` also matches before
    # a final newline: the id "<hex>\n" must still be refused.
    decode = msgspec.json.Decoder(JobId).decode
    assert decode(msgspec.json.encode("a" * 32)) == "a" * 32
    for bad in ("a" * 32 + "\n", "a" * 31, "a" * 33, "A" * 32, "\n" + "a" * 32):
        with pytest.raises(msgspec.ValidationError):
            decode(msgspec.json.encode(bad))

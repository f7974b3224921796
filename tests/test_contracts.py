"""The job request contract: defaults, bounds and field naming."""

import msgspec
import pytest

from mochi_contracts import subjects
from mochi_contracts.events import JobProgress, JobSubmitted, UnreadableEvent, decode_event, encode_event
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
    assert decode_event(body, headers) == event


def test_unknown_schema_version_is_refused():
    event = JobSubmitted(job_id="b" * 32, request=JobRequest(prompt="x"), owner="o")
    body, headers = encode_event(event)
    with pytest.raises(UnreadableEvent):
        decode_event(body, {**headers, "Mochi-Schema-Version": "99"})
    newer = msgspec.json.encode({**msgspec.json.decode(body), "schema_version": 2})
    with pytest.raises(UnreadableEvent):
        decode_event(newer)


def test_subjects_put_final_events_under_one_guarded_token():
    jid = "c" * 32
    assert subjects.event_subject(jid, "completed") == f"mochi.jobs.{jid}.final.completed"
    assert subjects.event_subject(jid, "progress") == f"mochi.jobs.{jid}.progress"
    with pytest.raises(ValueError):
        subjects.event_subject("x.>", "progress")

"""Deadlines (expired without a GPU), the maximum run time, per-job logs and
metrics, and video retention (410 after expires_at, the record stays)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import SMALL
from mochi_cli.client import ApiError
from sse_client import read_sse
from waits import wait_until


def test_deadline_expires_a_queued_job_no_runner_touches(system):
    system.start_catalog()
    system.start_api()
    system.start_webhooks()  # the dispatcher keeps the deadline timers
    client = system.client()
    job = client.submit("a cat walks on the grass", cancel_after="1s", **SMALL)
    assert job.request.deadline is not None
    later = client.submit("a dog", deadline=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(), **SMALL)
    done = client.wait(job.id, timeout=30, poll=0.2)
    assert done.status == "expired" and "deadline" in done.error
    assert client.get(later.id).status == "queued"
    # A runner that arrives later acks it without starting it.
    system.start_runner(wait=True)
    assert client.wait(later.id, timeout=120).status == "completed"
    types = [m.type for m in system.events(f"mochi.jobs.{job.id}.>")]
    assert types == ["submitted", "expired"]
    assert [j.id for j in client.list(status=["expired"]).jobs] == [job.id]
    # A deadline in the past, or a bad Cancel-After, is refused naming the field.
    with pytest.raises(ApiError) as err:
        client.submit("x", deadline="2020-01-01T00:00:00Z", **SMALL)
    assert "deadline" in err.value.field_errors
    with pytest.raises(ApiError) as err:
        client.submit("x", cancel_after="soon", **SMALL)
    assert "Cancel-After" in err.value.field_errors


def test_runner_expires_a_job_past_its_deadline_at_pull(system):
    """Without the dispatcher, the runner's own check at pull still keeps the GPU out of it."""
    system.start_catalog()
    system.start_api()
    client = system.client()
    job = client.submit("waves crash on rocks", cancel_after="500ms", **SMALL)
    time.sleep(1.0)
    system.start_runner(wait=True)
    done = client.wait(job.id, timeout=60, poll=0.2)
    assert done.status == "expired"
    assert [m.type for m in system.events(f"mochi.jobs.{job.id}.>")] == ["submitted", "expired"]


def test_running_job_past_max_run_time_fails_with_reason(system):
    system.start_catalog()
    system.start_runner(MOCHI_MAX_RUN_S="1.0", wait=True)
    system.start_api()
    client = system.client()
    # Several seconds of rendering even on a quiet machine (200 tiny 64x64 steps
    # once finished inside the limit), so the limit is what ends it.
    job = client.submit("a slow one", width=256, height=256, num_frames=25, num_inference_steps=200)
    done = client.wait(job.id, timeout=120, poll=0.2)
    assert done.status == "failed" and "maximum run time" in done.error, done
    assert any("maximum run time" in line.message and line.level == "error"
               for line in client.logs(job.id))


def test_logs_and_metrics_are_the_jobs_own(stack):
    client = stack.client()
    a = client.submit("a cat walks on the grass", **SMALL)
    b = client.submit("a bird flies over a forest", **SMALL)
    for job in (a, b):
        assert client.wait(job.id, timeout=120).status == "completed"
    logs_a, logs_b = client.logs(a.id), client.logs(b.id)
    assert logs_a and logs_b
    assert "first job since start-up" in logs_a[0].message and "warm" in logs_b[0].message
    assert any("rendered 4 of 4 steps" in line.message for line in logs_a)
    # Each line is one of the job's own log events, and no other job's.
    own_a = {m.seq for m in stack.events(f"mochi.jobs.{a.id}.log")}
    own_b = {m.seq for m in stack.events(f"mochi.jobs.{b.id}.log")}
    assert {line.seq for line in logs_a} == own_a and {line.seq for line in logs_b} == own_b
    assert not own_a & own_b
    # The same lines are in the job's SSE stream, and only its own.
    events = list(read_sse(f"{stack.api_url}/v1/jobs/{a.id}/events"))
    assert {int(e.id) for e in events if e.event == "log"} == own_a
    assert all(e.json["job_id"] == a.id for e in events)
    # The client library resumes the stream from an event id.
    streamed = list(client.events(a.id))
    assert [e.id for e in streamed] == [int(e.id) for e in events]
    resumed = list(client.events(a.id, last_event_id=streamed[2].id))
    assert [e.id for e in resumed] == [e.id for e in streamed[3:]]

    job = client.get(a.id)
    m = job.metrics
    assert m.runner == "runner" and m.queued_seconds >= 0
    assert m.running_seconds > 0 and m.seconds_per_step > 0
    assert job.links.logs == f"/v1/jobs/{a.id}/logs"
    with pytest.raises(ApiError) as err:
        client.logs("0" * 32)
    assert err.value.status == 404


def test_retention_turns_download_into_410_and_keeps_the_record(system, tmp_path):
    system.settings.update({"MOCHI_VIDEO_LIFETIME_S": "4", "MOCHI_RETENTION_SWEEP_INTERVAL_S": "0.5"})
    system.start_catalog()
    system.start_runner()
    system.start_api()
    client = system.client()
    job = client.submit("a red car", **SMALL)
    done = client.wait(job.id, timeout=120, poll=0.1)
    assert done.status == "completed"
    assert done.expires_at is not None and done.finished_at is not None
    expires = done.expires_at
    assert expires == done.finished_at + timedelta(seconds=4)
    stored = list((system.root / "videos").rglob("*.mp4"))
    assert sorted(p.name for p in stored) == [f"{job.id}.clip.mp4", f"{job.id}.mp4"]  # the video, its thumbnail clip
    if datetime.now(timezone.utc) < expires - timedelta(seconds=1):
        assert client.download(job.id, tmp_path / "v.mp4").stat().st_size == done.video.size_bytes
    wait_until(lambda: datetime.now(timezone.utc) > expires + timedelta(seconds=1), timeout=30)
    gone = client.http.get(f"/v1/jobs/{job.id}/video")
    assert gone.status_code == 410
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert gone.json()["type"].endswith("/video-gone")
    wait_until(lambda: not list((system.root / "videos").rglob("*.mp4")), timeout=10, what="swept")
    again = client.get(job.id)
    assert again.status == "completed" and again.video is not None

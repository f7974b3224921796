"""POST /v1/estimates against the real stack (nats-server, catalog, the tiny
model's runner, the API): checked like a submission and queues nothing,
nothing promised before a job completed here, the measured pace scaled to the
job afterwards, a job far beyond anything rendered said to be, and the start
behind a running job's own finish."""

from __future__ import annotations

import time
from datetime import datetime

import httpx

from conftest import SMALL


def estimate(api: str, body: dict) -> httpx.Response:
    return httpx.post(f"{api}/v1/estimates", json=body, timeout=30)


def jobs_listed(api: str) -> int:
    return len(httpx.get(f"{api}/v1/jobs?limit=100", timeout=30).json()["jobs"])


def test_estimates_scale_the_measured_pace_and_queue_nothing(stack) -> None:
    api = stack.api_url
    small = {"prompt": "a boat", **SMALL}

    # Checked as strictly as a submission, each error naming its field.
    bad = estimate(api, {**small, "width": "64"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "width", bad.text
    bad = estimate(api, {**small, "num_frames": 8})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "num_frames", bad.text
    bad = estimate(api, {**small, "colour": "red"})
    assert bad.status_code == 422, bad.text
    text = httpx.post(f"{api}/v1/estimates", content=b'{"prompt": "x"}', timeout=30,
                      headers={"content-type": "text/plain"})
    assert text.status_code == 415, text.text

    # Nothing completed here yet: no number, and beyond experience.
    first = estimate(api, small)
    assert first.status_code == 200, first.text
    got = first.json()
    assert got["work_seconds"] is None and got["estimated_finish_at"] is None, got
    assert got["measured_jobs"] == 0 and got["beyond_experience"] is True and got["times_largest"] is None
    assert jobs_listed(api) == 0  # an estimate queues nothing

    client = stack.client()
    done = [client.wait(client.submit(f"pace {i}", **SMALL).id, timeout=180) for i in range(2)]
    assert all(j.status == "completed" for j in done)
    took = max(j.metrics.running_seconds for j in done)

    got = estimate(api, small).json()
    assert got["measured_jobs"] == 2 and got["beyond_experience"] is False and got["times_largest"] == 1.0, got
    # The same size as the jobs measured: about as long as they took (steps and the phases after them).
    assert 0 < got["work_seconds"] <= 3 * took + 1, (got, took)
    start = datetime.fromisoformat(got["estimated_start_at"])
    finish = datetime.fromisoformat(got["estimated_finish_at"])
    assert abs((finish - start).total_seconds() - got["work_seconds"]) < 0.2
    assert got["queue_seconds"] is not None and got["queue_seconds"] < 1.0  # nothing ahead of it

    # Twice the steps: twice the denoising.
    double = estimate(api, {**small, "num_inference_steps": 8}).json()
    assert double["work_seconds"] > got["work_seconds"], (double, got)

    # Mochi's reference settings are thousands of times what was rendered here: said, before any click.
    reference = estimate(api, {"prompt": "a boat"}).json()
    assert reference["beyond_experience"] is True and reference["times_largest"] > 1000, reference
    assert reference["work_seconds"] > 100 * got["work_seconds"]
    assert jobs_listed(api) == 2


def test_estimated_start_waits_for_the_running_job(stack) -> None:
    api = stack.api_url
    client = stack.client()
    client.wait(client.submit("pace", **SMALL).id, timeout=180)
    long = client.submit("a long one", **{**SMALL, "num_inference_steps": 200})
    deadline = time.monotonic() + 120
    while (job := client.get(long.id)).progress.step < 5 or job.estimated_finish_at is None:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    try:
        got = estimate(api, {"prompt": "behind it", **SMALL}).json()
        assert got["queue_seconds"] > 0, got
        # It starts when the running job should finish, not "at once".
        start = datetime.fromisoformat(got["estimated_start_at"])
        fresh = client.get(long.id)
        assert fresh.estimated_finish_at is not None
        assert abs((start - fresh.estimated_finish_at).total_seconds()) < 0.25 * got["queue_seconds"] + 2, \
            (start, fresh.estimated_finish_at)
    finally:
        client.cancel(long.id)

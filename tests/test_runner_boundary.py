"""The runner reads what it hears about a job it renders at the one boundary
too: bytes on the job's cancel subject that are no cancel request of this job
(garbage, another kind's body, another job's request) stop nothing; a true
cancel request still stops the render."""

from __future__ import annotations

import asyncio

from conftest import SMALL
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import JobCancelRequested
from test_api_streams_hardening import _completed, publish_raw
from test_metrics import Scrape
from waits import wait_until

IN_FLIGHT = {**SMALL, "num_inference_steps": 60}


def test_what_is_no_cancel_request_stops_no_render(system):
    system.start_catalog()
    runner = system.start_runner(wait=True)
    system.start_api()
    client = system.client()
    job = client.submit("a kite over the dunes", **IN_FLIGHT)
    other = client.submit("a second kite", **IN_FLIGHT)
    wait_until(lambda: client.get(job.id).status == "running", timeout=60, what="the job rendering")
    cancel = subjects.event_subject(job.id, "cancel_requested")
    asyncio.run(publish_raw(system.nats_url, [
        (cancel, b"\xff\xfe not a cancel", {}),
        (cancel, encode_event(_completed(job.id, job.id))[0], {}),
        (cancel, encode_event(JobCancelRequested(job_id=other.id, requested_by="mallory"))[0], {}),
        (cancel, encode_event(JobCancelRequested(job_id=job.id, requested_by="mallory"))[0],
         {"Mochi-Job-Id": other.id}),
    ]))
    assert client.get(job.id).status == "running"  # published while it renders
    assert client.wait(job.id, timeout=240).status == "completed"
    finals = system.events(f"mochi.jobs.{job.id}.final.*")
    assert [m.type for m in finals] == ["completed"], finals
    # Each refused where the runner heard it: counted by why, and logged.
    scrape = Scrape(runner.health_url)
    refused = {why: scrape.get("mochi_events_rejected_total", consumer="runner-cancel", reason=why)
               for why in ("json", "mismatch", "header")}
    assert refused == {"json": 1.0, "mismatch": 2.0, "header": 1.0}, refused
    assert runner.log().count("event.rejected") >= 4

    # A true cancel request (the API's) still stops a render.
    wait_until(lambda: client.get(other.id).status == "running", timeout=60, what="the second job rendering")
    client.cancel(other.id)
    assert client.wait(other.id, timeout=120).status == "cancelled"

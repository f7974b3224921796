"""Cancel of queued and running jobs; Idempotency-Key across API replicas."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import msgspec
import nats

from conftest import SMALL
from mochi_cli.client import MochiClient
from mochi_common.nats_conn import last_event
from mochi_contracts import catalog, subjects
from mochi_contracts.events import JobSubmitted
from mochi_contracts.job_state import new_state
from waits import wait_until


def test_cancel_a_queued_job_never_starts_it(system):
    system.start_catalog()
    system.start_api()
    client = system.client()
    job = client.submit("a cat", **SMALL)
    cancelled = client.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.cancel_requested
    system.start_runner()
    after = client.submit("a dog", **SMALL)  # the runner reaches the cancelled job first
    assert client.wait(after.id, timeout=120).status == "completed"
    types = [m.type for m in system.events(f"mochi.jobs.{job.id}.>")]
    assert types == ["submitted", "cancel_requested", "cancelled"]
    assert "started" not in types
    resp = httpx.post(f"{system.api_url}/v1/jobs/{job.id}/cancel")
    assert resp.status_code == 409 and resp.json()["type"].endswith("job-finished")


def _lagging_catalog(nats_url: str, ready: threading.Event, stop: threading.Event) -> None:
    """A catalog that has projected each job's submission and nothing after it:
    it answers the catalog's get with the row the submitted event alone makes."""
    async def serve() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()

        async def answer(msg) -> None:  # noqa: ANN001
            query = msgspec.json.decode(msg.data, type=catalog.GetJob)
            found = await last_event(js, subjects.event_subject(query.job_id, "submitted"))
            job = (new_state(found.event, found.seq)
                   if found is not None and isinstance(found.event, JobSubmitted) else None)
            await msg.respond(msgspec.json.encode(catalog.GetJobReply(
                job=job, queue_position=1 if job else None, applied_seq=found.seq if found else 0)))

        await nc.subscribe(subjects.CATALOG_GET, cb=answer)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await nc.close()

    asyncio.run(serve())


def test_a_queued_jobs_cancel_reads_as_requested_while_the_catalog_lags(system):
    """The cancel of a queued job writes its request, then its final event: a
    read whose catalog row is older than both still says the cancel was asked."""
    ready, stop = threading.Event(), threading.Event()
    catalog_thread = threading.Thread(target=_lagging_catalog, args=(system.nats_url, ready, stop), daemon=True)
    catalog_thread.start()
    try:
        assert ready.wait(30), "the lagging catalog did not start"
        system.start_api()
        client = system.client()
        job = client.submit("a cat", **SMALL)
        cancelled = client.cancel(job.id)
        assert cancelled.status == "cancelled" and cancelled.cancel_requested, cancelled
        again = client.get(job.id)
        assert again.status == "cancelled" and again.cancel_requested, again
    finally:
        stop.set()
        catalog_thread.join(10)


def test_cancel_a_running_job_stops_within_a_step_and_frees_the_runner(stack):
    client = stack.client()
    job = client.submit("a cat", **{**SMALL, "num_inference_steps": 150})
    wait_until(lambda: client.get(job.id).progress.step >= 3, timeout=60, what="running")
    client.cancel(job.id)
    done = client.wait(job.id, timeout=60)
    assert done.status == "cancelled" and done.error.startswith("cancelled at step")
    msgs = stack.events(f"mochi.jobs.{job.id}.>")
    request_seq = next(m.seq for m in msgs if m.type == "cancel_requested")
    steps_after = [m.event.step for m in msgs if m.type == "progress" and m.seq > request_seq]
    assert len(steps_after) <= 1, steps_after  # the step under way finishes, no more
    assert msgs[-1].type == "cancelled"
    assert not list((stack.root / "videos").rglob("*.mp4"))
    # The runner is free for the next job at once.
    nxt = client.submit("a dog", **SMALL)
    assert client.wait(nxt.id, timeout=60).status == "completed"


def test_idempotency_key_holds_across_two_api_processes(system):
    system.start_catalog()
    system.start_api("api-1")
    first_api = system.api_url
    system.start_api("api-2")
    one, two = MochiClient(first_api), MochiClient(system.api_url)
    body = {"prompt": "a red car", **SMALL}
    key = {"Idempotency-Key": "order-42"}
    a = one.http.post("/v1/jobs", json=body, headers=key)
    b = two.http.post("/v1/jobs", json=body, headers=key)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"]
    assert a.json()["request"]["seed"] == b.json()["request"]["seed"]
    other = two.http.post("/v1/jobs", json={**body, "prompt": "a blue car"}, headers=key)
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    # Another owner's key space, or no key, makes a new job.
    fresh = one.http.post("/v1/jobs", json=body)
    assert fresh.json()["id"] != a.json()["id"]
    time.sleep(0.5)
    submitted = [m for m in system.events("mochi.jobs.*.submitted")]
    assert [m.event.job_id for m in submitted].count(a.json()["id"]) == 1


def test_retry_after_an_api_crash_between_claim_and_publish_makes_one_job(system):
    """The first API process claimed the key and died before publishing: the
    retry publishes the claimed job, with the claimed id and seed."""
    import asyncio

    import nats

    from mochi_api import idempotency
    from mochi_contracts.jobs import JobRequest

    system.start_catalog()
    system.start_api()
    body = {"prompt": "a bird flying", **SMALL}
    claimed = idempotency.Claim(job_id="ab" * 16, body_sha256=idempotency.body_hash(JobRequest(**body)),
                                seed=1234)

    async def claim_only() -> None:
        nc = await nats.connect(system.nats_url)
        kv = await idempotency.open_bucket(nc.jetstream(), 3600, 1)
        await idempotency.claim(kv, "anonymous", "crash-1", claimed)
        await nc.close()

    asyncio.run(claim_only())
    client = system.client()
    resp = client.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "crash-1"})
    again = client.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "crash-1"})
    assert resp.status_code == again.status_code == 202
    assert resp.json()["id"] == again.json()["id"] == claimed.job_id
    assert resp.json()["request"]["seed"] == 1234
    assert len(system.events(f"mochi.jobs.{claimed.job_id}.submitted")) == 1

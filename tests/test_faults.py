"""Fault suite: the stack on a three-node JetStream cluster (every stream and
consumer with three replicas) and the tiny model, with jobs in flight while
parts are killed, frozen or fed garbage. After each scenario one checker
reads the whole stream (invariants.check_invariants)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import httpx
import nats
import pytest

from conftest import SMALL, System
from invariants import check_invariants
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import JobSubmitted
from mochi_contracts.jobs import JobRequest
from mochi_contracts.streams import JOBS_STREAM
from sse_client import follow_job
from waits import wait_until

pytestmark = pytest.mark.fault

IN_FLIGHT = {**SMALL, "num_inference_steps": 60}
FAST_REDELIVERY = {"MOCHI_ACK_WAIT_S": "3"}


@pytest.fixture
def clustered(tmp_path, tiny_model, request):
    system = System(root=tmp_path, model_dir=tiny_model)
    system.start_nats_cluster(3)
    system.settings.update(FAST_REDELIVERY)
    yield system
    system.stop()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(system.dump_logs())


def start_stack(system: System, runners: int = 2) -> None:
    system.start_catalog()
    for i in range(runners):
        system.start_runner(f"runner-{i}", wait=True)
    system.start_api()


def submit_all(system: System, n: int, **params) -> list[str]:
    """Submit as a careful client does: retry a 503 with the same Idempotency-Key."""
    ids = []
    for i in range(n):
        body = {"prompt": f"a cat walks on the grass {i}", **params}
        key = {"Idempotency-Key": f"{time.time_ns()}-{i}"}
        resp = wait_until(
            lambda body=body, key=key: (r := httpx.post(f"{system.api_url}/v1/jobs", json=body, headers=key,
                                                        timeout=30)).status_code != 503 and r,
            timeout=60, every=1.0, what="a submit past the election")
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    return ids


def test_killing_nats_nodes_loses_no_job_and_answers_503_without_quorum(clustered):
    start_stack(clustered)
    cluster = clustered.cluster
    ids = submit_all(clustered, 4, **IN_FLIGHT)
    followed: dict[str, list] = {}
    reader = threading.Thread(target=lambda: followed.update({ids[-1]: follow_job(clustered.api_url, ids[-1])}))
    reader.start()
    client = clustered.client()
    wait_until(lambda: client.get(ids[0]).status == "running", timeout=60, what="a job in flight")

    leader = cluster.node_named(cluster.stream_leader(JOBS_STREAM))
    cluster.kill(leader)
    # A quorum stands: the API keeps answering, writes included.
    assert client.get(ids[1]).id == ids[1]
    ids += submit_all(clustered, 1, **SMALL)
    cluster.start(leader, clustered.logs)

    # Without a quorum the API answers 503 problem+json quickly: no 500, no hang.
    others = [n for n in cluster.nodes if n is not leader]
    for node in others:
        cluster.kill(node)
    started = time.monotonic()
    resp = httpx.post(f"{clustered.api_url}/v1/jobs", json={"prompt": "x", **SMALL}, timeout=30)
    assert resp.status_code == 503 and resp.headers["content-type"].startswith("application/problem+json")
    assert time.monotonic() - started < 15
    resp = httpx.get(f"{clustered.api_url}/v1/jobs/{ids[0]}", timeout=30)
    assert resp.status_code in (200, 503) and resp.status_code != 500
    for node in others:
        cluster.start(node, clustered.logs)
    cluster.wait_ready()

    for job_id in ids:
        assert client.wait(job_id, timeout=240).status == "completed"
    reader.join(timeout=240)
    # The live stream resumed without a gap: exactly the stream's events for that
    # job up to its final event, where a job's stream ends. (A runner whose
    # attempt was redelivered during the outage may land an event after it.)
    seen = [int(e.id) for e in followed[ids[3]]] if ids[3] in followed else None
    stream = clustered.events(f"mochi.jobs.{ids[3]}.>")
    final = next(m.seq for m in stream if ".final." in m.subject)
    assert seen == [m.seq for m in stream if m.seq <= final]
    outcome = check_invariants(clustered, clustered.root / "catalog.db")
    assert set(outcome.values()) == {"completed"}


def test_all_of_nats_restarted_from_its_stores(clustered):
    start_stack(clustered)
    ids = submit_all(clustered, 4, **IN_FLIGHT)
    client = clustered.client()
    wait_until(lambda: client.get(ids[0]).status == "running", timeout=60, what="a job in flight")
    clustered.cluster.stop_all()
    time.sleep(2)
    for node in clustered.cluster.nodes:
        clustered.cluster.start(node, clustered.logs)
    clustered.cluster.wait_ready()
    for job_id in ids:
        assert client.wait(job_id, timeout=240).status == "completed"
    check_invariants(clustered, clustered.root / "catalog.db")


def test_frozen_runner_resumed_publishes_no_second_completion(clustered):
    clustered.start_catalog()
    frozen = clustered.start_runner("runner-frozen", wait=True)
    clustered.start_api()
    client = clustered.client()
    job = client.submit("a cat", **{**SMALL, "num_inference_steps": 120})
    wait_until(lambda: client.get(job.id).progress.step >= 3, timeout=60, what="in flight")
    os.kill(frozen.popen.pid, signal.SIGSTOP)
    clustered.start_runner("runner-other")
    try:
        done = client.wait(job.id, timeout=180)
    finally:
        os.kill(frozen.popen.pid, signal.SIGCONT)
    assert done.status == "completed" and done.runner == "runner-other"
    video = next(p for p in (clustered.root / "videos").rglob("*.mp4") if "." not in p.stem)  # not <id>.clip.mp4
    before = (video.stat().st_mtime_ns, video.read_bytes())
    time.sleep(8)  # the resumed runner finds the job finished elsewhere and stops
    assert frozen.alive()
    assert (video.stat().st_mtime_ns, video.read_bytes()) == before
    finals = [m for m in clustered.events(f"mochi.jobs.{job.id}.final.*")]
    assert [m.type for m in finals] == ["completed"]
    check_invariants(clustered, clustered.root / "catalog.db")
    # And the resumed runner still works.
    nxt = client.submit("a dog", **SMALL)
    assert client.wait(nxt.id, timeout=120).status == "completed"


def test_catalog_killed_mid_projection_resumes_and_equals_a_rebuild(clustered):
    catalog = clustered.start_catalog()
    clustered.start_api()
    client = clustered.client()
    catalog.stop()
    ids = submit_all(clustered, 40, **SMALL)
    for job_id in ids[::3]:
        client.cancel(job_id)
    catalog = clustered.start_catalog(wait=False, MOCHI_BATCH_SIZE="5")
    time.sleep(1.5)
    catalog.kill()
    catalog = clustered.start_catalog()
    check_invariants(clustered, clustered.root / "catalog.db", all_final=False)
    assert len(list(client.iter_jobs())) == 40


def test_malformed_and_future_events_are_recorded_and_skipped(clustered):
    start_stack(clustered, runners=1)
    bad_id, future_id = "e" * 32, "f" * 32

    async def publish_garbage() -> None:
        nc = await nats.connect(clustered.nats_url.split(","))
        js = nc.jetstream()
        await js.publish(subjects.event_subject(bad_id, "submitted"), b"{not json", stream=JOBS_STREAM)
        await js.publish(subjects.event_subject(bad_id, "progress"), b"\x00\xff", stream=JOBS_STREAM)
        body, headers = encode_event(JobSubmitted(job_id=future_id, request=JobRequest(prompt="x", **SMALL),
                                                  owner="anonymous", schema_version=2))
        await js.publish(subjects.event_subject(future_id, "submitted"), body,
                         headers={**headers, "Mochi-Schema-Version": "2"}, stream=JOBS_STREAM)
        await nc.close()

    asyncio.run(publish_garbage())
    client = clustered.client()
    job = client.submit("a cat", **SMALL)
    assert client.wait(job.id, timeout=120).status == "completed"
    assert all(p.alive() for p in clustered.procs)
    import sqlite3

    with sqlite3.connect(clustered.root / "catalog.db") as conn:
        rejected = [r[0] for r in conn.execute("SELECT subject FROM rejected_events ORDER BY seq")]
    assert rejected == [subjects.event_subject(bad_id, "submitted"), subjects.event_subject(bad_id, "progress"),
                        subjects.event_subject(future_id, "submitted")]
    runner_log = clustered.procs[1].log()
    assert runner_log.count("unreadable submission") == 2
    assert httpx.get(f"{clustered.api_url}/v1/jobs/{future_id}").status_code == 404
    check_invariants(clustered, clustered.root / "catalog.db", all_final=False)


def _hostile_events(victim: str, other: str, stranger: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """(subject, body, headers) a careless or hostile publisher might send: on a
    running job's non-final subjects, and every kind on a job never submitted.
    The final subjects of real jobs are left out: NATS permissions keep them to
    the services (docs/security.md), and their guard makes the first one stick."""
    now = "2026-12-01T00:00:00Z"
    completed_of_other = (b'{"type":"completed","job_id":"%s","time":"%s","video":{"key":"videos/%s/%s.mp4",'
                          b'"size_bytes":10,"width":64,"height":64,"num_frames":7,"fps":30},"runner":"x","attempt":1}'
                          % (victim.encode(), now.encode(), other[:2].encode(), other.encode()))
    out: list[tuple[str, bytes, dict[str, str]]] = [
        (f"mochi.jobs.{victim}.log", completed_of_other, {"Mochi-Event-Type": "completed"}),
        (f"mochi.jobs.{victim}.progress", b'{"type":"progress","job_id":"%s","time":"2026-12-01T00:00:00",'
         b'"step":1,"total_steps":4,"runner":"x"}' % victim.encode(), {}),
        (f"mochi.jobs.{victim}.progress", b"\xff\xfe not utf-8", {}),
        (f"mochi.jobs.{victim}.progress", b'{"type":"progress","job_id":"%s","step":%s,"total_steps":4,'
         b'"runner":"x"}' % (victim.encode(), b"9" * 300), {}),
        (f"mochi.jobs.{victim}.started", b'{"type":"started","job_id":"%s","runner":"x","attempt":1}'
         % other.encode(), {}),
        (f"mochi.jobs.{victim}.webhook.1", b'{"type":"webhook","job_id":"%s"}' % victim.encode(), {}),
        (f"mochi.jobs.{victim}.log", b'{"type":"log","job_id":"%s","level":"info","message":"%s"}'
         % (victim.encode(), b"x" * 10_000), {}),
        (f"mochi.jobs.{victim}.final.completed.extra", completed_of_other, {}),
        # On the cancel subject a running job's runner listens to: no cancel request of this job.
        (f"mochi.jobs.{victim}.cancel_requested", b"\xff\xfe not a cancel", {}),
        (f"mochi.jobs.{victim}.cancel_requested", b'{"type":"cancel_requested","job_id":"%s","requested_by":"x"}'
         % other.encode(), {}),
        # The runner's live kinds, which reads, the web app's phase and the preview route look at.
        (f"mochi.jobs.{victim}.phase", b'{"type":"phase","job_id":"%s","phase":"exploding","runner":"x"}'
         % victim.encode(), {}),
        (f"mochi.jobs.{victim}.phase", b'{"type":"phase","job_id":"%s","phase":"storing","runner":"x"}'
         % other.encode(), {}),
        (f"mochi.jobs.{victim}.preview", b'{"type":"preview","job_id":"%s","step":9,"total_steps":4,"bytes":10,'
         b'"runner":"x"}' % victim.encode(), {}),
        (f"mochi.jobs.{victim}.preview", b'{"type":"preview","job_id":"%s","step":1,"total_steps":4,"bytes":%s,'
         b'"runner":"x"}' % (victim.encode(), b"9" * 50), {}),
    ]
    for kind in ("submitted", "started", "progress", "phase", "preview", "log", "final.completed", "final.failed"):
        out.append((f"mochi.jobs.{stranger}.{kind}", completed_of_other.replace(victim.encode(), stranger.encode()),
                    {}))
    return out


def test_a_foreign_publisher_breaks_no_read_stream_or_service(clustered):
    start_stack(clustered, runners=2)
    clustered.start_webhooks()
    ids = submit_all(clustered, 4, **{**SMALL, "num_inference_steps": 30})
    streams: dict[str, list] = {}
    readers = [threading.Thread(target=lambda j=j: streams.update({j: follow_job(clustered.api_url, j)}))
               for j in ids]
    for reader in readers:
        reader.start()
    client = clustered.client()
    wait_until(lambda: client.get(ids[0]).status == "running", timeout=60, what="a job in flight")

    async def publish_hostile() -> None:
        nc = await nats.connect(clustered.nats_url.split(","))
        js = nc.jetstream()
        for i, victim in enumerate(ids):
            for subject, body, headers in _hostile_events(victim, ids[(i + 1) % len(ids)], f"{i:x}" * 32):
                await js.publish(subject, body, headers=headers or None, stream=JOBS_STREAM)
        await nc.close()

    asyncio.run(publish_hostile())
    for job_id in ids:
        assert client.wait(job_id, timeout=240).status == "completed"
    for reader in readers:
        reader.join(timeout=120)
    assert all(p.alive() for p in clustered.procs), "a service died"

    # No 5xx on any read; each job serves its own video.
    for job_id in ids:
        got = httpx.get(f"{clustered.api_url}/v1/jobs/{job_id}", timeout=10)
        assert got.status_code == 200 and got.json()["status"] == "completed", got.text
        for path in ("logs", "video", "preview", "thumbnail", "thumbnail/clip"):
            resp = httpx.get(f"{clustered.api_url}/v1/jobs/{job_id}/{path}", timeout=10)
            assert resp.status_code < 500, (path, resp.status_code, resp.text[:200])
    assert httpx.get(f"{clustered.api_url}/v1/jobs?limit=100", timeout=10).status_code == 200
    stranger = httpx.get(f"{clustered.api_url}/v1/jobs/{'0' * 32}", timeout=10)
    assert stranger.status_code == 404, stranger.text
    # Every SSE stream ended at its job's true (first, guarded) final event.
    for job_id in ids:
        finals = [m for m in clustered.events(f"mochi.jobs.{job_id}.final.*")]
        assert len(finals) == 1 and finals[0].type == "completed"
        assert streams[job_id][-1].event == "completed" and streams[job_id][-1].id == str(finals[0].seq)
    check_invariants(clustered, clustered.root / "catalog.db")

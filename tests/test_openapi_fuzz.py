"""A property-based run of the OpenAPI document against the live API: no
input the schema allows (or nearly allows) may produce a 5xx, with the job
stream seeded first with what a hostile or broken publisher writes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from conftest import SMALL, System
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import JobPhase, JobPreview, JobStarted
from mochi_contracts.storage import video_key
from test_api_streams_hardening import _completed, hostile_events, publish, publish_raw, take
from waits import wait_until

OTHER_VIDEO = b"the other job's video bytes"


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, tiny_model):
    system = System(root=tmp_path_factory.mktemp("fuzz"), model_dir=tiny_model)
    system.start_nats()
    system.start_catalog()
    system.start_api(MOCHI_SUBMITS_PER_MINUTE="100000", MOCHI_MAX_QUEUED_PER_OWNER="100",
                     MOCHI_MAX_STREAMS_PER_OWNER="1000", MOCHI_SSE_HEARTBEAT_S="1")
    yield system
    system.stop()


@pytest.fixture(scope="module")
def seeded(live_api):
    """A victim job with hostile events on every subject of its own, next to
    a completed job whose video the hostile events point at."""
    client = live_api.client()
    victim = client.submit("the victim", **SMALL).id
    other = client.submit("the other", **SMALL).id
    path = live_api.root / "videos" / video_key(other)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(OTHER_VIDEO)
    done = _completed(other, other, runner="r")
    asyncio.run(publish(live_api.nats_url, JobStarted(job_id=other, runner="r", attempt=1), final=done))
    orphan = "0" * 32  # a job that was never submitted
    seqs = asyncio.run(publish_raw(live_api.nats_url, [
        *hostile_events(victim, other, final_too=True),
        *runner_hostile_events(victim, other),
        *hostile_events(orphan, other, final_too=True),
        ("mochi.jobs.not-a-job.log", b"{}", {}),
        ("mochi.jobs." + victim + ".final.completed.extra", b"\x00" * 64, {}),
    ]))
    return victim, other, seqs


def runner_hostile_events(victim: str, other: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """Bent phase and preview events (which the job's reads and its preview
    route look at) on the victim's subjects."""
    phase = msgspec.to_builtins(JobPhase(job_id=victim, phase="denoising", runner="r"))
    preview = msgspec.to_builtins(JobPreview(job_id=victim, step=1, total_steps=4, bytes=10, runner="r"))
    return [
        (subjects.event_subject(victim, "phase"), msgspec.json.encode({**phase, "phase": "exploding"}), {}),
        (subjects.event_subject(victim, "phase"),
         encode_event(JobPhase(job_id=other, phase="storing", runner="r"))[0], {}),
        (subjects.event_subject(victim, "preview"), msgspec.json.encode({**preview, "step": 9}), {}),
        (subjects.event_subject(victim, "preview"), msgspec.json.encode({**preview, "bytes": 10**40}), {}),
        (subjects.event_subject(victim, "preview"), msgspec.json.encode({**preview, "time": "2026-01-01T00:00:00"}),
         {}),
    ]


def test_hostile_events_change_no_job(live_api, seeded):
    victim, other, seqs = seeded
    client = live_api.client()
    got = client.get(victim)
    assert got.status == "queued" and got.video is None, got
    video = client.http.get(f"/v1/jobs/{victim}/video")
    assert video.status_code == 409 and OTHER_VIDEO not in video.content
    assert client.get(other).status == "completed"
    # The catalog lists both (it was not stopped by the hostile events) as they are.
    listed = wait_until(lambda: (lambda jobs: jobs if jobs.get(other) == "completed" else None)(
        {j.id: j.status for j in client.list(limit=100).jobs}), timeout=30, what="the catalog")
    assert listed[victim] == "queued"
    assert client.http.get("/v1/jobs/" + "0" * 32).status_code == 404
    # The victim's stream shows each refusal by its sequence and ends nothing.
    mine = [m.seq for m in live_api.events(f"mochi.jobs.{victim}.>")]
    replay = take(f"{live_api.api_url}/v1/jobs/{victim}/events", len(mine))
    assert [int(e.id) for e in replay] == mine
    assert [e.event for e in replay][0] == "submitted"
    assert {e.event for e in replay[1:]} == {"rejected"}
    logs = client.http.get(f"/v1/jobs/{victim}/logs")
    assert logs.status_code == 200
    assert {line["seq"] for line in logs.json()["logs"]} == set(mine[1:])


def test_no_input_makes_a_server_error(live_api, seeded):
    # Driven through schemathesis' Python API rather than its pytest plugin,
    # which does not load under pytest 9.2 (it reads Function._nodeid).
    schema = schemathesis.openapi.from_url(f"{live_api.api_url}/schema/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 9
    streams = [op for op in operations if op.path.endswith("events")]
    assert len(streams) == 2
    victim, other, _ = seeded
    by_job = [op for op in operations if "{job_id}" in op.path]
    assert len(by_job) >= 6, [op.path for op in by_job]
    for operation in operations:
        _fuzzed(operation, operation in streams, live_api.api_url, [victim, other, "0" * 32])()


def _fuzzed(operation: Any, is_stream: bool, api_url: str, seeded_ids: list[str]) -> Callable[[], None]:
    """One operation's hypothesis test (a function per operation, so each
    closes over its own operation rather than the loop's last one). A path's
    job id is now and then one of the seeded jobs, whose subjects hold the
    hostile events: a made-up id would only ever meet a 404."""

    @given(case=operation.as_strategy(), seeded_id=st.none() | st.sampled_from(seeded_ids))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case, seeded_id: str | None) -> None:
        if seeded_id is not None and "job_id" in (case.path_parameters or {}):
            case.path_parameters["job_id"] = seeded_id
        if not is_stream:
            case.call_and_validate(checks=[not_a_server_error], timeout=10)
            return
        # An event stream stays open by design: only its status is checked.
        kwargs = case.as_transport_kwargs(base_url=api_url)
        with requests.request(**kwargs, stream=True, timeout=10) as resp:
            assert resp.status_code < 500, (kwargs, resp.status_code, resp.content[:500])

    return check


def test_the_victims_stream_and_every_resume_stay_whole(live_api, seeded):
    """Resuming from any point of the victim's history (a browser reconnects
    with each id it saw) passes the refused events without a server error."""
    victim, _, _ = seeded
    mine = [m.seq for m in live_api.events(f"mochi.jobs.{victim}.>")]
    for i, seq in enumerate(mine[:-1]):
        rest = take(f"{live_api.api_url}/v1/jobs/{victim}/events", len(mine) - i - 1,
                    headers={"Last-Event-ID": str(seq)})
        assert [int(e.id) for e in rest] == mine[i + 1:]
    everything = httpx.get(f"{live_api.api_url}/readyz", timeout=10)
    assert everything.status_code == 200, everything.text


def test_the_document_has_examples_for_every_operation(live_api):
    doc = httpx.get(f"{live_api.api_url}/schema/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if not path.startswith("/v1/"):
                continue
            bodies = [r.get("content", {}) for r in op["responses"].values()]
            has_example = any("examples" in c or "example" in c for body in bodies for c in body.values())
            described = any(r.get("description") for r in op["responses"].values())
            assert has_example or (described and path.endswith("events")), (method, path)
    body = doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body.get("examples") or body["schema"].get("examples")
    # What a replay from the start sends is said where a client reads it.
    assert "MOCHI_SSE_REPLAY_MAX_EVENTS" in doc["paths"]["/v1/events"]["get"]["description"]

"""Live events over SSE: replay, resume with Last-Event-ID, follow, heartbeat."""

from __future__ import annotations

import itertools
import threading
import time

from conftest import SMALL
from sse_client import read_sse
from waits import wait_until

SLOWER = {**SMALL, "num_inference_steps": 30}


def test_job_stream_replays_then_follows_and_closes_after_final(stack):
    client = stack.client()
    job = client.submit("a cat walks on the grass", **SLOWER)
    got = list(read_sse(f"{stack.api_url}/v1/jobs/{job.id}/events"))
    types = [e.event for e in got]
    assert types[0] == "submitted" and types[1] == "started" and types[-1] == "completed"
    assert [e.json["step"] for e in got if e.event == "progress"] == list(range(1, 31))
    seqs = [int(e.id) for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The same ids are the stream's sequences, as `nats stream view` shows them.
    assert seqs == [m.seq for m in stack.events(f"mochi.jobs.{job.id}.>")]

    # Resume after a dropped connection: exactly the events after Last-Event-ID.
    cut = got[10]
    resumed = list(read_sse(f"{stack.api_url}/v1/jobs/{job.id}/events",
                            headers={"Last-Event-ID": cut.id}))
    assert [e.id for e in resumed] == [e.id for e in got[11:]]
    # Resuming after the final event ends at once with nothing.
    assert list(read_sse(f"{stack.api_url}/v1/jobs/{job.id}/events",
                         headers={"Last-Event-ID": got[-1].id})) == []


def test_stream_opened_mid_job_misses_nothing(stack):
    client = stack.client()
    job = client.submit("waves crash on rocks", **{**SMALL, "num_inference_steps": 120})
    wait_until(lambda: client.get(job.id).progress.step >= 5, timeout=60, what="mid job")
    got = list(read_sse(f"{stack.api_url}/v1/jobs/{job.id}/events"))
    assert [e.json["step"] for e in got if e.event == "progress"] == list(range(1, 121))
    assert got[-1].event == "completed"


def test_all_events_stream_follows_every_job_and_resumes(system):
    system.settings["MOCHI_SSE_HEARTBEAT_S"] = "0.5"
    system.start_catalog()
    system.start_api()
    url = f"{system.api_url}/v1/events"
    seen: list = []
    reader = threading.Thread(target=lambda: seen.extend(
        itertools.islice(read_sse(url, with_comments=True), 8)), daemon=True)
    reader.start()
    time.sleep(1.0)
    client = system.client()
    first = client.submit("a person dances", **SMALL)
    second = client.submit("a red car", **SMALL)
    client.cancel(first.id)
    system.start_runner()
    client.wait(second.id, timeout=120)
    reader.join(timeout=60)
    events = [e for e in seen if e.comment is None]
    assert any(e.comment == "keep-alive" for e in seen)
    assert {e.json["job_id"] for e in events} == {first.id, second.id}
    assert [e.event for e in events][:2] == ["submitted", "submitted"]

    # Resume from the first event: everything after it, in order.
    resumed = list(itertools.islice(read_sse(url, headers={"Last-Event-ID": events[0].id}), 3))
    assert [e.id for e in resumed] == [e.id for e in events[1:4]]


def test_many_open_streams_share_one_consumer(system):
    """Fifty open /v1/events streams cost the API process no consumer beyond
    its one shared hub; one more than the key's cap is refused."""
    import asyncio

    import httpx
    import nats

    from mochi_contracts.streams import JOBS_STREAM

    system.start_catalog()
    system.start_api(MOCHI_MAX_STREAMS_PER_OWNER="50")

    async def consumers() -> int:
        nc = await nats.connect(system.nats_url)
        info = await nc.jetstream().stream_info(JOBS_STREAM)
        await nc.close()
        return info.state.consumer_count

    before = asyncio.run(consumers())

    async def open_streams() -> int:
        async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
            streams = [http.stream("GET", "/v1/events") for _ in range(50)]
            responses = [await s.__aenter__() for s in streams]
            assert all(r.status_code == 200 for r in responses)
            during = await consumers()
            assert (await http.get("/v1/events")).status_code == 429
            for s in streams:
                await s.__aexit__(None, None, None)
            return during

    assert asyncio.run(open_streams()) == before

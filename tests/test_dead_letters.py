"""The dead-letter handlers (mochi_common.dead_letters) on a real server: a
message nak'ed until its deliveries run out becomes a max-deliveries advisory,
and the handler of its consumer turns that into the job's failed event, once.
An advisory of another consumer is termed, not acted on."""

from __future__ import annotations

import asyncio
import json
import uuid

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from mochi_common.consumer import ACK, Term
from mochi_common.jetstream_setup import ensure_runner_topology
from mochi_common.nats_conn import last_event, publish_event
from mochi_contracts import subjects
from mochi_contracts.events import JobFailed, JobLog, JobSubmitted
from mochi_contracts.jobs import JobRequest
from mochi_contracts.streams import (
    DEAD_LETTER_CONSUMER, DEAD_LETTER_STREAM, JOBS_STREAM, MAX_DELIVERIES_ADVISORY, RELEASE_DEAD_LETTER_CONSUMER,
    RELEASE_DEAD_LETTER_STREAM, RELEASE_STREAM, RELEASED_CONSUMER, RUNNERS_CONSUMER,
    JetStreamSettings)
from mochi_runner.dead_letters import DeadLetters
from mochi_scheduler import metrics as scheduler_metrics
from mochi_scheduler.dead_letters import ReleaseDeadLetters
from mochi_scheduler.topology import ensure_runner_release_topology, ensure_scheduler_topology

MAX_DELIVER = 2
CFG = JetStreamSettings(max_deliver=MAX_DELIVER)


def _submission() -> JobSubmitted:
    return JobSubmitted(job_id=uuid.uuid4().hex, owner="someone",
                        request=JobRequest(prompt="a cat", width=64, height=64, num_frames=7,
                                           num_inference_steps=2, seed=1))


async def _submitted(system) -> tuple[nats.NATS, JetStreamContext, JobSubmitted]:  # noqa: ANN001
    """A connection, the runners' topology and one job submitted on it."""
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    await ensure_runner_topology(js, CFG)
    job = _submission()
    await publish_event(js, job)
    return nc, js, job


async def _exhaust(js: JetStreamContext, stream: str, consumer: str) -> None:
    """Take the consumer's one message and nak it, as a runner dying every time
    would. The server sends the advisory when it would deliver once more, which
    it tries only while a pull is waiting: hence the last, empty fetch."""
    sub = await js.pull_subscribe_bind(consumer, stream)
    for _ in range(MAX_DELIVER):
        (msg,) = await sub.fetch(1, timeout=10)
        await msg.nak()
    with pytest.raises(NatsTimeout):
        await sub.fetch(1, timeout=1)
    await sub.unsubscribe()


async def _advisory(js: JetStreamContext, stream: str, consumer: str):  # noqa: ANN202
    sub = await js.pull_subscribe_bind(consumer, stream)
    (msg,) = await sub.fetch(1, timeout=10)
    return msg


def _dead(counter_before: float) -> float:
    return scheduler_metrics.DEAD._value.get() - counter_before


def test_a_submission_out_of_deliveries_fails_its_job_once(system) -> None:  # noqa: ANN001
    async def run() -> None:
        nc, js, job = await _submitted(system)
        await _exhaust(js, JOBS_STREAM, RUNNERS_CONSUMER)
        advisory = await _advisory(js, DEAD_LETTER_STREAM, DEAD_LETTER_CONSUMER)

        # The scheduler's handler knows only the released consumer.
        wrong = await ReleaseDeadLetters(js).handle(advisory)
        assert isinstance(wrong, Term) and f"not {RELEASE_STREAM}/{RELEASED_CONSUMER}" in wrong.reason
        assert await last_event(js, subjects.job_final(job.job_id)) is None

        assert await DeadLetters(js).handle(advisory) == ACK
        final = await last_event(js, subjects.job_final(job.job_id), consistent=True)
        assert final is not None and isinstance(final.event, JobFailed)
        assert final.event.attempts == MAX_DELIVER
        assert f"gave up after {MAX_DELIVER} deliveries" in final.event.reason
        # Handled again (a redelivered advisory): still the one final event.
        assert await DeadLetters(js).handle(advisory) == ACK
        again = await last_event(js, subjects.job_final(job.job_id), consistent=True)
        assert again is not None and again.seq == final.seq
        await nc.close()

    asyncio.run(run())


def test_a_release_out_of_deliveries_fails_its_job_once(system) -> None:  # noqa: ANN001
    async def run() -> None:
        nc = await nats.connect(system.nats_url)
        js = nc.jetstream()
        await ensure_scheduler_topology(js, CFG, 3600.0)
        await ensure_runner_release_topology(js, CFG)
        job_id = uuid.uuid4().hex
        await js.publish(subjects.released(job_id), b"{}", stream=RELEASE_STREAM)
        await _exhaust(js, RELEASE_STREAM, RELEASED_CONSUMER)
        advisory = await _advisory(js, RELEASE_DEAD_LETTER_STREAM, RELEASE_DEAD_LETTER_CONSUMER)

        wrong = await DeadLetters(js).handle(advisory)
        assert isinstance(wrong, Term) and f"not {JOBS_STREAM}/{RUNNERS_CONSUMER}" in wrong.reason

        before = scheduler_metrics.DEAD._value.get()
        assert await ReleaseDeadLetters(js).handle(advisory) == ACK
        final = await last_event(js, subjects.job_final(job_id), consistent=True)
        assert final is not None and isinstance(final.event, JobFailed)
        assert final.event.attempts == MAX_DELIVER
        assert await ReleaseDeadLetters(js).handle(advisory) == ACK
        # Counted once: the second publish met the job's final event.
        assert _dead(before) == 1
        await nc.close()

    asyncio.run(run())


def test_a_bad_advisory_is_termed_and_fails_no_job(system) -> None:  # noqa: ANN001
    """What a careless or hostile publisher puts on the advisory subject: bytes
    that are no advisory, numbers out of bounds, a sequence that is gone or is
    no submission. Each is termed with its reason; no job gets a final event."""
    async def run() -> None:
        nc, js, job = await _submitted(system)
        log_seq = await publish_event(js, JobLog(job_id=job.job_id, level="info", message="a line"))
        junk_seq = (await js.publish(subjects.job_logs(job.job_id), b'{"level": "info"}', stream=JOBS_STREAM)).seq

        def advisory(stream_seq: object, deliveries: object = 2) -> bytes:
            return json.dumps({"stream": JOBS_STREAM, "consumer": RUNNERS_CONSUMER,
                               "stream_seq": stream_seq, "deliveries": deliveries}).encode()

        hostile = [(b"\xff not json", "unreadable advisory"), (b"{}", "unreadable advisory"),
                   (advisory(2**63), "unreadable advisory"), (advisory(-1), "unreadable advisory"),
                   (advisory(1, 2**40), "unreadable advisory"), (advisory("1"), "unreadable advisory"),
                   (advisory(10**6), "is gone from"), (advisory(log_seq), "is not a submission"),
                   (advisory(junk_seq), "is unreadable")]
        for data, _ in hostile:
            await nc.publish(MAX_DELIVERIES_ADVISORY, data)
        await nc.flush()
        sub = await js.pull_subscribe_bind(DEAD_LETTER_CONSUMER, DEAD_LETTER_STREAM)
        msgs = await sub.fetch(len(hostile), timeout=10)
        assert [m.data for m in msgs] == [data for data, _ in hostile]
        for msg, (_, reason) in zip(msgs, hostile, strict=True):
            outcome = await DeadLetters(js).handle(msg)
            assert isinstance(outcome, Term) and reason in outcome.reason, (msg.data, outcome)
        assert await last_event(js, subjects.job_final(job.job_id), consistent=True) is None
        await nc.close()

    asyncio.run(run())

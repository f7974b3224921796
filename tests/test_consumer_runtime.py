"""The consumer runtime (mochi_common.consumer) against a real nats-server: every
message has an end. A handler that keeps failing is termed after max_failures
and counted; NATS being away counts nothing against a message; and the webhook
dispatcher, a real process, terms what it cannot read on its consumers and
goes on delivering."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter as Tally

import msgspec
import nats
from nats.errors import ConnectionClosedError
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from prometheus_client import REGISTRY

from mochi_common.consumer import ACK, DurableConsumer, Outcome, Term
from mochi_common.nats_conn import publish_event, publish_final
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import JobCompleted, JobSubmitted, VideoInfo, utcnow
from mochi_contracts.jobs import JobRequest
from mochi_contracts.storage import video_key
from mochi_contracts.streams import DEADLINE_CONSUMER, DISPATCH_STREAM, JOBS_STREAM, WEBHOOK_SENDER_CONSUMER
from mochi_webhooks.delivery import Delivery
from test_metrics import Scrape
from waits import wait_until
from webhook_receiver import Receiver


def _settled(label: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("mochi_consumer_messages_total", {"consumer": label, "outcome": outcome}) or 0.0


def test_a_failing_message_is_termed_after_max_failures_and_nats_away_counts_nothing(system):
    """Four messages on one durable consumer with max_deliver=-1 (as the
    dispatcher's): one whose handler always raises, one that meets NATS away
    more often than max_failures and then succeeds, one the handler terms, one
    acked. Each ends once; nothing is delivered again after its end."""
    label = f"test-{uuid.uuid4().hex[:8]}"
    seen: Tally[str] = Tally()
    away_left = 3

    async def handle(msg) -> Outcome:  # type: ignore[no-untyped-def]
        nonlocal away_left
        kind = msg.subject.split(".")[-1]
        seen[kind] += 1
        if kind == "broken":
            raise ValueError("this message breaks its handler every time")
        if kind == "flaky" and away_left > 0:
            away_left -= 1
            raise ConnectionClosedError()
        if kind == "unreadable":
            return Term("undecodable")
        return ACK

    async def scenario() -> dict:
        nc = await nats.connect(system.nats_url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="RUNTIME", subjects=["runtime.>"]))
        await js.add_consumer("RUNTIME", ConsumerConfig(durable_name="work", ack_policy=AckPolicy.EXPLICIT,
                                                        ack_wait=30.0, max_deliver=-1))
        for kind in ("broken", "flaky", "unreadable", "good"):
            await js.publish(f"runtime.{kind}", b"x", stream="RUNTIME")
        consumer = DurableConsumer(js, "RUNTIME", "work", label=label, max_failures=2)
        stop = asyncio.Event()
        run = asyncio.create_task(consumer.run(handle, stop))
        deadline = time.monotonic() + 30
        while min(_settled(label, "term"), _settled(label, "ack")) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # longer than any nak delay: an end that did not hold would show here
        stop.set()
        await run
        info = await js.consumer_info("RUNTIME", "work")
        await nc.close()
        return {"pending": info.num_pending, "ack_pending": info.num_ack_pending}

    left = asyncio.run(scenario())
    assert seen == {"broken": 2, "flaky": 4, "unreadable": 1, "good": 1}, seen
    assert _settled(label, "term") == 2  # the broken one after its second failure, and the unreadable one
    assert _settled(label, "ack") == 2  # the flaky one once NATS was back, and the good one
    assert _settled(label, "nak") == 4  # one for the broken one's first failure, three for NATS away
    errors = {kind: REGISTRY.get_sample_value("mochi_consumer_handler_errors_total",
                                              {"consumer": label, "kind": kind}) for kind in ("error", "nats")}
    assert errors == {"error": 2.0, "nats": 3.0}, errors
    assert left == {"pending": 0, "ack_pending": 0}, left


JOB, OTHER = "1" * 32, "2" * 32


def test_the_dispatcher_terms_what_it_cannot_read_and_goes_on(system):
    receiver = Receiver().start()
    try:
        dispatcher = system.start_webhooks()

        async def publish() -> str:
            nc = await nats.connect(system.nats_url)
            js = nc.jetstream()
            # On the dispatch stream (which only the dispatcher may write in a
            # deployment): bytes that are no delivery, a delivery under another
            # job's subject, and bytes that are no deadline timer.
            await js.publish(subjects.webhook_delivery(JOB, "completed", 7), b"\xff not a delivery",
                             stream=DISPATCH_STREAM)
            now = utcnow()
            elsewhere = Delivery(id=f"msg_{OTHER}_7", job_id=OTHER, seq=7, event_type="completed",
                                 url=receiver.url, event_time=now, created_at=now, body="{}")
            await js.publish(subjects.webhook_delivery(JOB, "completed", 7), msgspec.json.encode(elsewhere),
                             stream=DISPATCH_STREAM)
            await js.publish(subjects.deadline_timer(JOB), b'{"job_id": 5}', stream=DISPATCH_STREAM)
            # Well-formed JSON that no subject or clock can take: a job id that
            # is none (its subject cannot be built) and a deadline without a
            # timezone (it cannot be compared with now). Refused at decoding,
            # not failed on until the runtime's cap.
            bad = {"id": "msg_BAD_7", "job_id": "BAD", "seq": 7, "event_type": "completed", "url": receiver.url,
                   "event_time": now.isoformat(), "created_at": now.isoformat(), "body": "{}"}
            await js.publish(f"{subjects.DISPATCH_PREFIX}.webhooks.BAD.completed.7", msgspec.json.encode(bad),
                             stream=DISPATCH_STREAM)
            await js.publish(f"{subjects.DISPATCH_PREFIX}.deadlines.BAD", b'{"job_id": "BAD", "deadline": '
                             + msgspec.json.encode(now.isoformat()) + b"}", stream=DISPATCH_STREAM)
            await js.publish(subjects.deadline_timer(JOB), b'{"job_id": "' + JOB.encode()
                             + b'", "deadline": "2026-01-01T00:00:00"}', stream=DISPATCH_STREAM)
            # On the job stream: a completed body on a job's progress subject, refused at the boundary.
            job = uuid.uuid4().hex
            video = VideoInfo(key=video_key(job), size_bytes=10, width=64, height=64, num_frames=7, fps=30)
            completed = JobCompleted(job_id=job, video=video, runner="r", attempt=1)
            await js.publish(subjects.event_subject(job, "progress"), encode_event(completed)[0], stream=JOBS_STREAM)
            # Then a real job with a webhook, ended: its webhook must still arrive.
            request = JobRequest(prompt="a cat", width=64, height=64, num_frames=7, num_inference_steps=4, seed=1,
                                 webhook_url=receiver.url)
            await publish_event(js, JobSubmitted(job_id=job, request=request, owner="anonymous"))
            await publish_final(js, completed)
            await nc.close()
            return job

        job = asyncio.run(publish())
        wait_until(lambda: receiver.successes(), timeout=60, what="the real job's webhook")
        assert f'"job_id":"{job}"' in receiver.requests[-1].body.decode().replace(" ", "")

        def ended() -> Scrape | None:
            scrape = Scrape(dispatcher.health_url)
            done = (scrape.get("mochi_consumer_messages_total", consumer="webhook-sender", outcome="term") == 3
                    and scrape.get("mochi_consumer_messages_total", consumer="webhook-deadlines",
                                   outcome="term") == 3)
            return scrape if done else None

        scrape = wait_until(ended, timeout=30, what="the unreadable dispatch messages termed")
        assert (scrape.get("mochi_events_rejected_total", consumer="webhook-planner", reason="mismatch") or 0) >= 1
        # No handler failed on them: each was ended at its first delivery.
        assert not scrape.get("mochi_consumer_handler_errors_total", consumer="webhook-sender", kind="error")
        assert not scrape.get("mochi_consumer_handler_errors_total", consumer="webhook-deadlines", kind="error")

        async def left() -> list[tuple[int, int, int]]:
            nc = await nats.connect(system.nats_url)
            js = nc.jetstream()
            infos = [await js.consumer_info(DISPATCH_STREAM, name)
                     for name in (WEBHOOK_SENDER_CONSUMER, DEADLINE_CONSUMER)]
            await nc.close()
            return [(i.num_pending, i.num_ack_pending, i.num_redelivered) for i in infos]

        assert asyncio.run(left()) == [(0, 0, 0), (0, 0, 0)]
        log = dispatcher.log()
        assert log.count("consumer.termed") == 6, log[-3000:]
        assert "unreadable delivery" in log and "does not match its subject" in log
        assert "unreadable deadline timer" in log
        assert dispatcher.alive()
    finally:
        receiver.stop()

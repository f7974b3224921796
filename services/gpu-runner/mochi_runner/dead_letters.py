"""Fail the jobs that JetStream gave up on.

When a job's deliveries run out (its runner died every time), the server
publishes a max-deliveries advisory, which the dead-letter stream keeps. Any
runner turns each one into the job's failed event, so no job is dropped
silently and no reaper has to scan for stuck jobs."""

from __future__ import annotations

import asyncio

import msgspec
import structlog
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from mochi_common.nats_conn import PatientJetStream, Reconnects, publish_final
from mochi_common.pull import DurablePuller
from mochi_contracts.event_codec import UnreadableEvent, decode_event
from mochi_contracts.events import JobFailed
from mochi_contracts.streams import DEAD_LETTER_CONSUMER, DEAD_LETTER_STREAM, JOBS_STREAM

log = structlog.get_logger()


class MaxDeliveriesAdvisory(msgspec.Struct):
    stream_seq: int
    deliveries: int


async def fail_dead_jobs(nc: Client, stop: asyncio.Event, reconnects: Reconnects) -> None:
    js = PatientJetStream(nc.jetstream(), 60.0)
    puller = DurablePuller(nc.jetstream(), DEAD_LETTER_STREAM, DEAD_LETTER_CONSUMER, reconnects)
    try:
        await _fail_dead_jobs(js, puller, stop)
    finally:
        await puller.close()


async def _fail_dead_jobs(js: PatientJetStream, puller: DurablePuller, stop: asyncio.Event) -> None:
    while not stop.is_set():
        msg = await puller.next(timeout=2.0)
        if msg is not None:
            advisory = msgspec.json.decode(msg.data, type=MaxDeliveriesAdvisory)
            try:
                raw = await js.get_msg(JOBS_STREAM, advisory.stream_seq, direct=True)
                event = decode_event(raw.data or b"", dict(raw.headers or {}), raw.subject or "")
            except (NotFoundError, UnreadableEvent) as err:
                log.error("dead_letter.unreadable_job", seq=advisory.stream_seq, error=repr(err))
                await msg.term()
                continue
            seq = await publish_final(js, JobFailed(
                job_id=event.job_id, attempts=advisory.deliveries,
                reason=(f"gave up after {advisory.deliveries} deliveries: the runner stopped "
                        "(crashed or was killed) during every attempt")))
            log.warning("dead_letter.job_failed", job_id=event.job_id,
                        deliveries=advisory.deliveries, published=seq is not None)
            await msg.ack()

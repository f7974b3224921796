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
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError

from mochi_common.nats_conn import publish_final
from mochi_contracts.events import JobFailed, UnreadableEvent, decode_event
from mochi_contracts.streams import DEAD_LETTER_CONSUMER, DEAD_LETTER_STREAM, JOBS_STREAM

log = structlog.get_logger()


class MaxDeliveriesAdvisory(msgspec.Struct):
    stream_seq: int
    deliveries: int


async def fail_dead_jobs(nc: Client, stop: asyncio.Event) -> None:
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(durable=DEAD_LETTER_CONSUMER, stream=DEAD_LETTER_STREAM)
    try:
        await _fail_dead_jobs(js, sub, stop)
    finally:
        # nats-py's drain() waits 30 s on a pull subscription left open.
        await sub.unsubscribe()


async def _fail_dead_jobs(js, sub, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    while not stop.is_set():
        try:
            msgs = await sub.fetch(1, timeout=2.0)
        except NatsTimeout:
            continue
        for msg in msgs:
            advisory = msgspec.json.decode(msg.data, type=MaxDeliveriesAdvisory)
            try:
                raw = await js.get_msg(JOBS_STREAM, advisory.stream_seq, direct=True)
                event = decode_event(raw.data or b"", dict(raw.headers or {}))
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

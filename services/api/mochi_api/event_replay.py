"""Past events from the stream, for SSE replay and Last-Event-ID resume.

A short-lived ordered consumer reads from the requested sequence up to the
last event that exists now; anything newer comes from the shared hub."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from mochi_api.event_hub import StreamEvent
from mochi_contracts import subjects
from mochi_contracts.events import HDR_EVENT_TYPE
from mochi_contracts.streams import JOBS_STREAM


async def replay(js: JetStreamContext, subject: str, from_seq: int, to_seq: int) -> AsyncIterator[StreamEvent]:
    if from_seq > to_seq:
        return
    sub = await js.subscribe(subject, stream=JOBS_STREAM, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                             config=ConsumerConfig(opt_start_seq=from_seq))
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=5.0)
            except NatsTimeout:
                return  # nothing more arrived: the events up to to_seq were trimmed
            seq = msg.metadata.sequence.stream
            job_id = subjects.job_id_of(msg.subject)
            if job_id is not None:
                yield StreamEvent(seq=seq, subject=msg.subject, job_id=job_id,
                                  type=(msg.headers or {}).get(HDR_EVENT_TYPE, ""), data=msg.data)
            if seq >= to_seq or msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()

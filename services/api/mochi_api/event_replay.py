"""Past events from the stream, for SSE replay and Last-Event-ID resume.

A short-lived ordered consumer reads from the requested sequence up to the
newest event that exists now; anything newer comes from the shared hub.
Every message is decoded at the boundary (event_hub.stream_event): a refused
one comes out as a rejected StreamEvent, never as the bytes it carried."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from mochi_api.event_hub import StreamEvent, stream_event
from mochi_common.nats_conn import newest_seq
from mochi_contracts.streams import JOBS_STREAM


class ReplayCutShort(NatsTimeout):
    """The replay stopped before the newest event: an ordered consumer stalled
    past its timeout, as during a stream leader election. An SSE stream ends
    here rather than follow live past the gap, and its client reconnects with
    Last-Event-ID (a browser's EventSource does); a plain GET answers 503 like
    any other NATS timeout."""


async def replay(js: JetStreamContext, subject: str, from_seq: int) -> AsyncIterator[StreamEvent]:
    """The events on `subject` from `from_seq` through the newest one now."""
    to_seq = await newest_seq(js, subject)
    if from_seq > to_seq:
        return
    sub = await js.subscribe(subject, stream=JOBS_STREAM, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                             config=ConsumerConfig(opt_start_seq=from_seq))
    seq = from_seq - 1
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=5.0)
            except NatsTimeout:
                raise ReplayCutShort(f"replay of {subject} stopped after {seq}, before {to_seq}") from None
            seq = msg.metadata.sequence.stream
            event = stream_event("api-replay", msg.subject, seq, msg.data, msg.headers, msg.metadata.timestamp)
            if event is not None:
                yield event
            # Pending 0 below to_seq: the newest was deleted meanwhile; nothing more to read.
            if seq >= to_seq or msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()

"""Read the job stream the way `nats stream view` does: an ordered consumer
over a subject filter, each message with its subject, headers and sequence."""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import DeliverPolicy

from mochi_contracts.event_codec import UnreadableEvent, decode_event
from mochi_contracts.events import JobEvent
from mochi_contracts.streams import JOBS_STREAM


@dataclass(frozen=True)
class StreamMessage:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes

    @property
    def event(self) -> JobEvent:
        return decode_event(self.data, self.headers, self.subject)

    def readable(self) -> bool:
        try:
            decode_event(self.data, self.headers, self.subject)
        except UnreadableEvent:
            return False
        return True

    @property
    def type(self) -> str:
        return self.headers.get("Mochi-Event-Type", "")


async def read_events(url: str, subject: str = "mochi.jobs.>") -> list[StreamMessage]:
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream()
        info = await js.stream_info(JOBS_STREAM)
        if info.state.messages == 0:
            return []
        sub = await js.subscribe(subject, stream=JOBS_STREAM, ordered_consumer=True,
                                 deliver_policy=DeliverPolicy.ALL)
        out: list[StreamMessage] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except NatsTimeout:
                return out
            out.append(StreamMessage(msg.metadata.sequence.stream, msg.subject,
                                     dict(msg.headers or {}), msg.data))
            if msg.metadata.num_pending == 0:
                return out
    finally:
        await nc.close()


def decodable(messages: list[StreamMessage]) -> list[StreamMessage]:
    return [m for m in messages if m.readable()]

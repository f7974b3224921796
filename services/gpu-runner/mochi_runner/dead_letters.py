"""Fail the submitted jobs whose deliveries from `gpu-runners` ran out. Any
runner handles the dead-letter stream (mochi_common.dead_letters)."""

from __future__ import annotations

from nats.js.api import RawStreamMsg

from mochi_common.consumer import Term
from mochi_common.dead_letters import DeadLetterHandler
from mochi_contracts.event_codec import UnreadableEvent, decode_event
from mochi_contracts.events import JobSubmitted
from mochi_contracts.streams import JOBS_STREAM, RUNNERS_CONSUMER


class DeadLetters(DeadLetterHandler):
    stream = JOBS_STREAM
    consumer = RUNNERS_CONSUMER

    def job_of(self, raw: RawStreamMsg, seq: int) -> str | Term:
        try:
            event = decode_event(raw.data or b"", raw.headers, raw.subject or "")
        except UnreadableEvent as err:
            return Term(f"job message {seq} is unreadable: {err}")
        if not isinstance(event, JobSubmitted):
            return Term(f"message {seq} is not a submission")
        return event.job_id

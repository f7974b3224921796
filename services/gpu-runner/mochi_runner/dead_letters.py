"""Fail the jobs that JetStream gave up on.

When a job's deliveries run out (its runner died every time), the server
publishes a max-deliveries advisory, which the dead-letter stream keeps. Any
runner turns each one into the job's failed event, so no job is dropped
silently and no reaper has to scan for stuck jobs."""

from __future__ import annotations

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from mochi_common.consumer import ACK, Outcome, Term
from mochi_common.nats_conn import PatientJetStream, publish_final
from mochi_contracts.event_codec import UnreadableEvent, decode_event
from mochi_contracts.events import JobFailed, JobSubmitted
from mochi_contracts.streams import JOBS_STREAM, RUNNERS_CONSUMER, MaxDeliveriesAdvisory

log = structlog.get_logger()


_decode_advisory = msgspec.json.Decoder(MaxDeliveriesAdvisory).decode


class DeadLetters:
    """The consumer runtime's handler for the dead-letter stream."""

    def __init__(self, js: PatientJetStream):
        self.js = js

    async def handle(self, msg: Msg) -> Outcome:
        try:
            advisory = _decode_advisory(msg.data)
        except msgspec.MsgspecError as err:
            return Term(f"unreadable advisory: {err}")
        if (advisory.stream, advisory.consumer) != (JOBS_STREAM, RUNNERS_CONSUMER):
            return Term(f"an advisory of {advisory.stream}/{advisory.consumer}, not the runners' consumer")
        try:
            raw = await self.js.get_msg(JOBS_STREAM, advisory.stream_seq, direct=True)
            event = decode_event(raw.data or b"", raw.headers, raw.subject or "")
        except NotFoundError:
            return Term(f"job message {advisory.stream_seq} is gone from the stream")
        except UnreadableEvent as err:
            return Term(f"job message {advisory.stream_seq} is unreadable: {err}")
        if not isinstance(event, JobSubmitted):
            return Term(f"message {advisory.stream_seq} is not a submission")
        seq = await publish_final(self.js, JobFailed(
            job_id=event.job_id, attempts=min(advisory.deliveries, 100_000),
            reason=(f"gave up after {advisory.deliveries} deliveries: the runner stopped "
                    "(crashed or was killed) during every attempt")))
        log.warning("dead_letter.job_failed", job_id=event.job_id,
                    deliveries=advisory.deliveries, published=seq is not None)
        return ACK

"""Fail the jobs that JetStream gave up on.

When a message's deliveries run out (its runner died during every attempt),
the server publishes a max-deliveries advisory, which a dead-letter stream
keeps (contracts' streams.py). Each advisory becomes the failed event of the
job that message was, so no job is dropped silently and no reaper has to scan
for stuck jobs. The runners handle the `gpu-runners` consumer's advisories,
the scheduler those of `released-runners`; they differ only in how the
exhausted message names its job."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from mochi_common.consumer import ACK, Outcome, Term
from mochi_common.nats_conn import publish_final
from mochi_contracts.events import JobFailed
from mochi_contracts.streams import MaxDeliveriesAdvisory

log = structlog.get_logger()

_decode_advisory = msgspec.json.Decoder(MaxDeliveriesAdvisory).decode


class DeadLetterHandler(ABC):
    """The consumer runtime's handler for one consumer's advisories. A
    subclass names the stream and consumer and reads the job out of the
    message that ran out of deliveries (`job_of`)."""

    stream: str
    consumer: str

    def __init__(self, js: Any):
        self.js = js

    @abstractmethod
    def job_of(self, raw: RawStreamMsg, seq: int) -> str | Term:
        """The job id the exhausted message stands for, or why it names none."""

    # An optional hook, empty on purpose (the runner's handler counts nothing
    # here), so not abstract: B027 asks that of empty methods of an ABC.
    def failed(self, job_id: str) -> None:  # noqa: B027
        """Called once the job's failed event is published (not for a duplicate)."""

    async def handle(self, msg: Msg) -> Outcome:
        try:
            advisory = _decode_advisory(msg.data)
        except msgspec.MsgspecError as err:
            return Term(f"unreadable advisory: {err}")
        if (advisory.stream, advisory.consumer) != (self.stream, self.consumer):
            return Term(f"an advisory of {advisory.stream}/{advisory.consumer}, "
                        f"not {self.stream}/{self.consumer}")
        try:
            raw = await self.js.get_msg(self.stream, advisory.stream_seq, direct=True)
        except NotFoundError:
            return Term(f"message {advisory.stream_seq} is gone from {self.stream}")
        job_id = self.job_of(raw, advisory.stream_seq)
        if isinstance(job_id, Term):
            return job_id
        seq = await publish_final(self.js, JobFailed(
            job_id=job_id, attempts=min(advisory.deliveries, 100_000),
            reason=(f"gave up after {advisory.deliveries} deliveries: the runner stopped "
                    "(crashed or was killed) during every attempt")))
        if seq is not None:
            self.failed(job_id)
        log.warning("dead_letter.job_failed", job_id=job_id, consumer=self.consumer,
                    deliveries=advisory.deliveries, published=seq is not None)
        return ACK

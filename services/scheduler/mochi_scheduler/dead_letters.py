"""Fail the released jobs whose deliveries ran out (their runner died during
every attempt): the released consumer's max-deliveries advisories, kept in
their own stream, each become the job's failed event. Any scheduler replica
handles them (a durable consumer), leader or not."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from mochi_common.consumer import ACK, Outcome, Term
from mochi_common.nats_conn import publish_final
from mochi_contracts import subjects
from mochi_contracts.events import JobFailed
from mochi_contracts.streams import RELEASE_STREAM, RELEASED_CONSUMER, MaxDeliveriesAdvisory
from mochi_scheduler import metrics

log = structlog.get_logger()


_decode = msgspec.json.Decoder(MaxDeliveriesAdvisory).decode


class ReleaseDeadLetters:
    def __init__(self, js: Any):
        self.js = js

    async def handle(self, msg: Msg) -> Outcome:
        try:
            advisory = _decode(msg.data)
        except msgspec.MsgspecError as err:
            return Term(f"unreadable advisory: {err}")
        if (advisory.stream, advisory.consumer) != (RELEASE_STREAM, RELEASED_CONSUMER):
            return Term(f"an advisory of {advisory.stream}/{advisory.consumer}, not the released consumer")
        try:
            raw = await self.js.get_msg(RELEASE_STREAM, advisory.stream_seq)
        except NotFoundError:
            return Term(f"release {advisory.stream_seq} is gone from {RELEASE_STREAM}")
        job_id = subjects.released_job_id(raw.subject or "")
        if job_id is None:
            return Term(f"message {advisory.stream_seq} of {RELEASE_STREAM} is not a release")
        seq = await publish_final(self.js, JobFailed(
            job_id=job_id, attempts=min(advisory.deliveries, 100_000),
            reason=(f"gave up after {advisory.deliveries} deliveries: the runner stopped "
                    "(crashed or was killed) during every attempt")))
        if seq is not None:
            metrics.DEAD.inc()
        log.warning("dead_letter.job_failed", job_id=job_id, deliveries=advisory.deliveries,
                    published=seq is not None)
        return ACK

"""Fail the released jobs whose deliveries from `released-runners` ran out
(their runner died during every attempt). Any scheduler replica handles them
(a durable consumer), leader or not (mochi_common.dead_letters)."""

from __future__ import annotations

from nats.js.api import RawStreamMsg

from mochi_common.consumer import Term
from mochi_common.dead_letters import DeadLetterHandler
from mochi_contracts import subjects
from mochi_contracts.streams import RELEASE_STREAM, RELEASED_CONSUMER
from mochi_scheduler import metrics


class ReleaseDeadLetters(DeadLetterHandler):
    stream = RELEASE_STREAM
    consumer = RELEASED_CONSUMER

    def job_of(self, raw: RawStreamMsg, seq: int) -> str | Term:
        job_id = subjects.released_job_id(raw.subject or "")
        if job_id is None:
            return Term(f"message {seq} of {RELEASE_STREAM} is not a release")
        return job_id

    def failed(self, job_id: str) -> None:
        metrics.DEAD.inc()

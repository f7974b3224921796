"""Reading events off the job stream in a service: decode at the boundary
(mochi_contracts.event_codec), and count and log what is refused, so a
foreign or broken event is skipped visibly rather than stopping a loop."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from prometheus_client import Counter

from mochi_contracts.event_codec import UnreadableEvent, decode_event
from mochi_contracts.events import JobEvent

log = structlog.get_logger()

REJECTED = Counter(
    "mochi_events_rejected_total",
    "Job-stream messages a consumer refused at decoding (and skipped), by consumer and why",
    ["consumer", "reason"])


def refused(consumer: str, subject: str, err: UnreadableEvent, seq: int | None = None) -> None:
    REJECTED.labels(consumer, err.kind).inc()
    log.warning("event.rejected", consumer=consumer, subject=subject[:200], seq=seq, kind=err.kind,
                reason=str(err), job_id=err.job_id)


def read_event(consumer: str, subject: str, data: bytes | None, headers: Mapping[str, str] | None,
               seq: int | None = None) -> JobEvent | None:
    """The event, or None once a refusal is counted and logged."""
    try:
        return decode_event(data or b"", headers, subject)
    except UnreadableEvent as err:
        refused(consumer, subject, err, seq)
        return None

"""The catalog's Prometheus metrics, served on /metrics by mochi_common.health_server.

Every metric is defined here, once. The metric objects live in
prometheus_client's default registry, the one piece of process-wide mutable
state this module keeps (the accepted exception: it is what the health server
exposes). The catalog is the natural home of the fleet-wide numbers: it
already follows the stream, so it also samples the stream and the runners'
work consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, Protocol

import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge

from mochi_contracts.job_state import STATUSES
from mochi_contracts.streams import JOBS_STREAM, RUNNERS_CONSUMER

log = structlog.get_logger()

JOBS = Gauge("mochi_catalog_jobs", "Jobs in the catalog, by status", ["status"])

# The runners' work consumer: what waits, what is being worked on, what came back.
QUEUE_DEPTH = Gauge(
    "mochi_catalog_queue_depth",
    "Submitted jobs no runner has pulled yet (the runners' consumer num_pending)", ["consumer"])
CONSUMER_ACK_PENDING = Gauge(
    "mochi_catalog_consumer_ack_pending",
    "Jobs pulled by a runner and not yet acked: in flight (num_ack_pending)", ["consumer"])
CONSUMER_REDELIVERED = Gauge(
    "mochi_catalog_consumer_redelivered",
    "In-flight jobs delivered more than once (num_redelivered)", ["consumer"])
CONSUMER_WAITING = Gauge(
    "mochi_catalog_consumer_waiting",
    "Pull requests waiting for a job: idle runners (num_waiting)", ["consumer"])

# The projection against the stream.
APPLIED_SEQ = Gauge("mochi_catalog_applied_sequence", "Last stream sequence the projection applied")
STREAM_LAST_SEQ = Gauge("mochi_catalog_stream_last_sequence", "Last sequence in the job stream")
PROJECTION_LAG = Gauge(
    "mochi_catalog_projection_lag_events",
    "Events in the job stream the projection has not applied yet (stream last - applied)")

EVENTS_APPLIED = Counter(
    "mochi_catalog_events_applied", "Stream events this process applied to the projection")
RejectReason = Literal["unreadable", "unknown_job"]
EVENTS_REJECTED = Counter(
    "mochi_catalog_events_rejected",
    "Stream events the projection refused: unreadable, or for a job never submitted", ["reason"])
for _reason in ("unreadable", "unknown_job"):
    EVENTS_REJECTED.labels(reason=_reason)

DAMAGED = Counter(
    "mochi_catalog_database_rebuilds_total",
    "Times this replica found its SQLite database damaged and rebuilt it from the stream")
REFRESH_ERRORS = Counter(
    "mochi_catalog_metrics_refresh_errors", "Failed samplings of the stream and consumer")
LAST_REFRESH = Gauge(
    "mochi_catalog_metrics_refreshed_timestamp_seconds",
    "Unix time of the last complete sampling of the stream, consumer and job counts")


def events_applied(applied: int, rejected: dict[RejectReason, int]) -> None:
    EVENTS_APPLIED.inc(applied)
    for reason, count in rejected.items():
        if count:
            EVENTS_REJECTED.labels(reason=reason).inc(count)


class _Projection(Protocol):  # what the sampler reads of mochi_catalog.projection.Projection
    def applied_seq(self) -> int: ...
    def count_by_status(self) -> dict[str, int]: ...


async def refresh(js: JetStreamContext, projection: _Projection) -> None:
    """Sample the stream, the runners' consumer and the projection once."""
    info = await js.stream_info(JOBS_STREAM)
    # The stream first: events applied meanwhile make the lag smaller, never negative.
    applied = projection.applied_seq()
    STREAM_LAST_SEQ.set(info.state.last_seq)
    APPLIED_SEQ.set(applied)
    PROJECTION_LAG.set(max(info.state.last_seq - applied, 0))
    counts = projection.count_by_status()
    for status in STATUSES:
        JOBS.labels(status=status).set(counts.get(status, 0))
    try:
        consumer = await js.consumer_info(JOBS_STREAM, RUNNERS_CONSUMER)
    except NotFoundError:
        # No runner has made the work consumer yet: nothing queued there.
        log.debug("catalog.metrics_no_consumer", consumer=RUNNERS_CONSUMER)
    else:
        QUEUE_DEPTH.labels(consumer=RUNNERS_CONSUMER).set(consumer.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(consumer=RUNNERS_CONSUMER).set(consumer.num_ack_pending or 0)
        CONSUMER_REDELIVERED.labels(consumer=RUNNERS_CONSUMER).set(consumer.num_redelivered or 0)
        CONSUMER_WAITING.labels(consumer=RUNNERS_CONSUMER).set(consumer.num_waiting or 0)
    LAST_REFRESH.set(time.time())


async def refresh_forever(js: JetStreamContext, projection: Callable[[], _Projection],
                          interval_s: float) -> None:
    """`refresh` every interval_s; an error is logged and counted, and the next
    round tries again. `projection()` gives the current one (a catalog that
    finds itself ahead of the stream replaces its projection)."""
    while True:
        try:
            await refresh(js, projection())
        except Exception as err:  # NATS reconnecting, a slow server: the next round may do
            REFRESH_ERRORS.inc()
            log.warning("catalog.metrics_refresh_failed", error=repr(err))
        await asyncio.sleep(interval_s)

"""JetStream stream and consumer settings, and their idempotent creation.

The job stream keeps every event (limits retention) so it can be replayed and
projected again; the runners' work queue is a durable pull consumer on it,
filtered to submitted events, rather than a second stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from mochi_contracts import subjects

JOBS_STREAM = "MOCHI_JOBS"
RUNNERS_CONSUMER = "gpu-runners"
DEAD_LETTER_STREAM = "MOCHI_DEAD_LETTERS"
DEAD_LETTER_CONSUMER = "dead-letters"
# The server publishes this when a job hit the runners' max deliveries.
MAX_DELIVERIES_ADVISORY = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS_STREAM}.{RUNNERS_CONSUMER}")

DUPLICATE_WINDOW_S = 120.0

# The webhook dispatcher: its own durable consumer on the job stream (never the
# catalog's or the runners'), and its own stream of pending work: one message per
# webhook to deliver and one timer per deadline, kept (limits retention) so a
# create-if-absent guard makes each unique while it lives.
DISPATCH_STREAM = "MOCHI_DISPATCH"
DISPATCHER_CONSUMER = "webhook-dispatcher"
WEBHOOK_SENDER_CONSUMER = "webhook-sender"
DEADLINE_CONSUMER = "deadlines"


@dataclass(frozen=True)
class JetStreamSettings:
    """The knobs an operator may turn; everything else is fixed here."""

    replicas: int = 1
    # A runner heartbeats well inside this while it works on a job.
    ack_wait_s: float = 60.0
    max_deliver: int = 5
    max_age_days: float = 0.0  # 0 keeps events for ever


def jobs_stream(cfg: JetStreamSettings) -> StreamConfig:
    return StreamConfig(
        name=JOBS_STREAM,
        description="Mochi Serve job events (the source of truth)",
        subjects=[subjects.ALL_JOB_EVENTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=cfg.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=cfg.max_age_days * 86400.0,
        max_msg_size=256 * 1024,
        allow_direct=True,
    )


def dead_letter_stream(cfg: JetStreamSettings) -> StreamConfig:
    # Advisories are plain NATS messages; capturing them in a stream means a
    # dead job is failed even if no runner was listening at that moment.
    return StreamConfig(
        name=DEAD_LETTER_STREAM,
        description="Max-deliveries advisories of the runners' consumer",
        subjects=[MAX_DELIVERIES_ADVISORY],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=cfg.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=7 * 86400.0,
    )


def dispatch_stream(cfg: JetStreamSettings, max_age_s: float = 7 * 86400.0) -> StreamConfig:
    # max_age must outlive the longest retry window and the furthest deadline.
    return StreamConfig(
        name=DISPATCH_STREAM,
        description="Webhooks to deliver and deadline timers (the webhook dispatcher's work)",
        subjects=[subjects.ALL_DISPATCH],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=cfg.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=max_age_s,
        max_msg_size=256 * 1024,
        allow_direct=True,
    )


def dispatcher_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    """Reads job events and turns them into deliveries and timers; acks an
    event only once its work is stored in the dispatch stream."""
    return ConsumerConfig(
        durable_name=DISPATCHER_CONSUMER,
        description="Webhook dispatcher: job events to deliveries and deadline timers",
        filter_subjects=list(subjects.DISPATCHER_SOURCES),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=1024,
        num_replicas=cfg.replicas,
    )


def webhook_sender_consumer(cfg: JetStreamSettings, ack_wait_s: float = 60.0) -> ConsumerConfig:
    # A delivery waiting for its retry is nak'ed with a delay and still counts
    # as pending, hence the large max_ack_pending; ack_wait outlives one HTTP try.
    return ConsumerConfig(
        durable_name=WEBHOOK_SENDER_CONSUMER,
        description="Webhook dispatcher: deliveries and their retries",
        filter_subject=subjects.ALL_WEBHOOK_DELIVERIES,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=100_000,
        num_replicas=cfg.replicas,
    )


def deadline_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=DEADLINE_CONSUMER,
        description="Webhook dispatcher: queued jobs' deadlines",
        filter_subject=subjects.ALL_DEADLINES,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=100_000,
        num_replicas=cfg.replicas,
    )


def runners_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=RUNNERS_CONSUMER,
        description="GPU runners pull submitted jobs",
        filter_subject=subjects.ALL_SUBMITTED,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=cfg.ack_wait_s,
        max_deliver=cfg.max_deliver,
        # One job at a time per runner; this only caps a runaway fleet.
        max_ack_pending=1024,
        num_replicas=cfg.replicas,
    )


def dead_letter_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=DEAD_LETTER_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=16,
        num_replicas=cfg.replicas,
    )


_STREAM_FIELDS = ("subjects", "retention", "storage", "discard", "num_replicas",
                  "duplicate_window", "max_age", "max_msg_size", "allow_direct", "description")
_CONSUMER_FIELDS = ("filter_subject", "filter_subjects", "ack_policy", "ack_wait", "max_deliver",
                    "max_ack_pending", "description")


def _differs(want: object, have: object, fields: tuple[str, ...]) -> list[str]:
    # A field left unset (None) takes the server's default, which is not a change.
    return [f for f in fields
            if getattr(want, f) is not None and getattr(want, f) != getattr(have, f)]


T = TypeVar("T")
log = logging.getLogger("mochi.jetstream")
# A cluster that is still forming or electing answers these for seconds:
# 10005 "no suitable peers for placement" (not all peers known yet) and 10008
# "JetStream system temporarily unavailable". Services that start beside it (a
# rollout starts every pod at once) wait them out instead of crash-looping.
_FORMING_CLUSTER_CODES = {10005, 10008}
# How long the ensure_* calls wait for a forming cluster before they give up.
SETUP_PATIENCE_S = 60.0


async def patiently(op: Callable[[], Awaitable[T]], is_transient: Callable[[Exception], bool],
                    patience_s: float, on_retry: Callable[[Exception, float], None], first_delay_s: float = 0.25) -> T:
    """`op()`, called again after each transient failure with a doubling delay
    (at most 5 s) for up to `patience_s`; any other failure, or the last one,
    is raised. One backoff for JetStream set-up here and for the runner's
    publishes (mochi_common.nats_conn.PatientJetStream)."""
    deadline, delay = time.monotonic() + patience_s, first_delay_s
    while True:
        try:
            return await op()
        except Exception as err:
            if not is_transient(err) or time.monotonic() + delay > deadline:
                raise
            on_retry(err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _cluster_not_ready(err: Exception) -> bool:
    if isinstance(err, (NatsTimeoutError, NoRespondersError, ServiceUnavailableError)):
        return True
    return isinstance(err, APIError) and err.err_code in _FORMING_CLUSTER_CODES


async def _while_cluster_forms(op: Callable[[], Awaitable[T]], what: str) -> T:
    def on_retry(err: Exception, delay: float) -> None:
        log.warning("jetstream setup of %s waits for the cluster (%r); retry in %.2fs", what, err, delay)

    return await patiently(op, _cluster_not_ready, SETUP_PATIENCE_S, on_retry)


async def ensure_stream(js: JetStreamContext, want: StreamConfig) -> str:
    """Create or update a stream; return 'created', 'updated' or 'unchanged'."""
    return await _while_cluster_forms(lambda: _ensure_stream(js, want), f"stream {want.name}")


async def ensure_consumer(js: JetStreamContext, stream: str, want: ConsumerConfig) -> str:
    """Create or update a durable consumer; return what happened."""
    return await _while_cluster_forms(lambda: _ensure_consumer(js, stream, want), f"consumer {want.durable_name}")


async def _ensure_stream(js: JetStreamContext, want: StreamConfig) -> str:
    try:
        info = await js.stream_info(want.name)
    except NotFoundError:
        await js.add_stream(want)
        return "created"
    if _differs(want, info.config, _STREAM_FIELDS):
        await js.update_stream(want)
        return "updated"
    return "unchanged"


async def _ensure_consumer(js: JetStreamContext, stream: str, want: ConsumerConfig) -> str:
    assert want.durable_name
    try:
        info = await js.consumer_info(stream, want.durable_name)
    except NotFoundError:
        await js.add_consumer(stream, want)
        return "created"
    if _differs(want, info.config, _CONSUMER_FIELDS):
        await js.add_consumer(stream, want)  # the server treats this as an update
        return "updated"
    return "unchanged"


async def ensure_jobs_stream(js: JetStreamContext, cfg: JetStreamSettings) -> str:
    return await ensure_stream(js, jobs_stream(cfg))


async def ensure_runner_topology(js: JetStreamContext, cfg: JetStreamSettings) -> dict[str, str]:
    """Everything a runner needs: the job stream, its work consumer, dead letters."""
    return {
        JOBS_STREAM: await ensure_stream(js, jobs_stream(cfg)),
        RUNNERS_CONSUMER: await ensure_consumer(js, JOBS_STREAM, runners_consumer(cfg)),
        DEAD_LETTER_STREAM: await ensure_stream(js, dead_letter_stream(cfg)),
        DEAD_LETTER_CONSUMER: await ensure_consumer(
            js, DEAD_LETTER_STREAM, dead_letter_consumer(cfg)),
    }


async def ensure_dispatcher_topology(js: JetStreamContext, cfg: JetStreamSettings,
                                     dispatch_max_age_s: float = 7 * 86400.0,
                                     sender_ack_wait_s: float = 60.0) -> dict[str, str]:
    """Everything the webhook dispatcher needs."""
    return {
        JOBS_STREAM: await ensure_stream(js, jobs_stream(cfg)),
        DISPATCH_STREAM: await ensure_stream(js, dispatch_stream(cfg, dispatch_max_age_s)),
        DISPATCHER_CONSUMER: await ensure_consumer(js, JOBS_STREAM, dispatcher_consumer(cfg)),
        WEBHOOK_SENDER_CONSUMER: await ensure_consumer(
            js, DISPATCH_STREAM, webhook_sender_consumer(cfg, sender_ack_wait_s)),
        DEADLINE_CONSUMER: await ensure_consumer(js, DISPATCH_STREAM, deadline_consumer(cfg)),
    }

"""JetStream stream and consumer settings, and their idempotent creation.

The job stream keeps every event (limits retention) so it can be replayed and
projected again; the runners' work queue is a durable pull consumer on it,
filtered to submitted events, rather than a second stream."""

from __future__ import annotations

from dataclasses import dataclass

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
from nats.js.errors import NotFoundError

from mochi_contracts import subjects

JOBS_STREAM = "MOCHI_JOBS"
RUNNERS_CONSUMER = "gpu-runners"
DEAD_LETTER_STREAM = "MOCHI_DEAD_LETTERS"
DEAD_LETTER_CONSUMER = "dead-letters"
# The server publishes this when a job hit the runners' max deliveries.
MAX_DELIVERIES_ADVISORY = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS_STREAM}.{RUNNERS_CONSUMER}")

DUPLICATE_WINDOW_S = 120.0


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
_CONSUMER_FIELDS = ("filter_subject", "ack_policy", "ack_wait", "max_deliver",
                    "max_ack_pending", "description")


def _differs(want: object, have: object, fields: tuple[str, ...]) -> list[str]:
    # A field left unset (None) takes the server's default, which is not a change.
    return [f for f in fields
            if getattr(want, f) is not None and getattr(want, f) != getattr(have, f)]


async def ensure_stream(js: JetStreamContext, want: StreamConfig) -> str:
    """Create or update a stream; return 'created', 'updated' or 'unchanged'."""
    try:
        info = await js.stream_info(want.name)
    except NotFoundError:
        await js.add_stream(want)
        return "created"
    if _differs(want, info.config, _STREAM_FIELDS):
        await js.update_stream(want)
        return "updated"
    return "unchanged"


async def ensure_consumer(js: JetStreamContext, stream: str, want: ConsumerConfig) -> str:
    """Create or update a durable consumer; return what happened."""
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

"""JetStream stream and consumer settings: what exists, declared once. Their
idempotent creation is mochi_common.jetstream_setup's.

The job stream keeps every event (limits retention) so it can be replayed and
projected again; the runners' work queue is a durable pull consumer on it,
filtered to submitted events, rather than a second stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from mochi_contracts import subjects

JOBS_STREAM = "MOCHI_JOBS"
RUNNERS_CONSUMER = "gpu-runners"
DEAD_LETTER_STREAM = "MOCHI_DEAD_LETTERS"
DEAD_LETTER_CONSUMER = "dead-letters"
# The server publishes this when a job hit the runners' max deliveries.
MAX_DELIVERIES_ADVISORY = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS_STREAM}.{RUNNERS_CONSUMER}")

DUPLICATE_WINDOW_S = 120.0

# Renders in progress (issue 20): one object per job, named by its job id, the
# latents after the newest saved step. An object store bucket, so its stream
# is OBJ_<bucket>. Runners delete a job's checkpoint at its final event; the
# max age removes those of jobs that ended otherwise (dead letters, a runner
# lost before its final event): a job is redelivered within minutes
# (ack wait, backoff, max deliveries), so a day-old checkpoint is abandoned.
CHECKPOINT_BUCKET = "mochi_checkpoints"
CHECKPOINT_STREAM = f"OBJ_{CHECKPOINT_BUCKET}"
CHECKPOINT_MAX_AGE_S = 86400.0

# Live previews of renders in progress (issue 24): per job an animated WebP and
# its PNG still (preview_object()), overwritten at most every few seconds.
# Runners delete a job's previews at its final event; the max age removes
# those of a runner lost before it: a preview older than an hour is of no job
# still running (the maximum run time is shorter), so nobody reads it.
PREVIEW_BUCKET = "mochi_previews"
PREVIEW_STREAM = f"OBJ_{PREVIEW_BUCKET}"
PREVIEW_MAX_AGE_S = 3600.0
PREVIEW_CONTENT_TYPE = "image/webp"
PREVIEW_STILL_CONTENT_TYPE = "image/png"

# Fair-share scheduling (MOCHI_SCHEDULING=fair, docs/scheduling.md): the
# scheduler releases one job at a time into MOCHI_RELEASED as runner lanes free;
# the runners pull releases from `released-runners` instead of submissions from
# `gpu-runners`. The leader lease is a KV bucket whose TTL is the lease.
RELEASE_STREAM = "MOCHI_RELEASED"
RELEASED_CONSUMER = "released-runners"
RELEASE_DEAD_LETTER_STREAM = "MOCHI_RELEASE_DEAD_LETTERS"
RELEASE_DEAD_LETTER_CONSUMER = "release-dead-letters"
RELEASE_MAX_DELIVERIES_ADVISORY = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{RELEASE_STREAM}.{RELEASED_CONSUMER}")
SCHEDULER_LEASE_BUCKET = "mochi_scheduler_lease"
SCHEDULER_LEASE_KEY = "leader"
# The leader's planned release order (mochi_contracts.scheduling.QueueOrder),
# one value rewritten as it changes; the API reads it for honest queue
# positions in fair mode. Its TTL makes the plan of a scheduler that stopped
# expire, and the API then falls back to the catalog's FIFO positions.
SCHEDULER_QUEUE_BUCKET = "mochi_scheduler_queue"
SCHEDULER_QUEUE_KEY = "order"
SCHEDULER_QUEUE_TTL_S = 30.0

# The webhook dispatcher: its own durable consumer on the job stream (never the
# catalog's or the runners'), and its own stream of pending work: one message per
# webhook to deliver and one timer per deadline, kept (limits retention) so a
# create-if-absent guard makes each unique while it lives.
DISPATCH_STREAM = "MOCHI_DISPATCH"
DISPATCHER_CONSUMER = "webhook-dispatcher"
WEBHOOK_SENDER_CONSUMER = "webhook-sender"
DEADLINE_CONSUMER = "deadlines"


class MaxDeliveriesAdvisory(msgspec.Struct):
    """The fields of the server's max-deliveries advisory that the dead-letter
    handlers read (io.nats.jetstream.advisory.v1.max_deliver), bounded."""

    stream: str
    consumer: str
    stream_seq: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    deliveries: Annotated[int, msgspec.Meta(ge=0, le=2**31)]


@dataclass(frozen=True)
class JetStreamSettings:
    """The knobs an operator may turn; everything else is fixed here."""

    replicas: int = 1
    # A runner heartbeats well inside this while it works on a job.
    ack_wait_s: float = 60.0
    max_deliver: int = 5
    max_age_days: float = 0.0  # 0 keeps events for ever


def _kept_stream(cfg: JetStreamSettings, name: str, description: str, subject: str,
                 max_age_s: float, max_msg_size: int) -> StreamConfig:
    """A stream that keeps what it is sent (limits retention) until max_age, so a
    create-if-absent guard holds while a message lives and it can be replayed."""
    return StreamConfig(
        name=name,
        description=description,
        subjects=[subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=cfg.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=max_age_s,
        max_msg_size=max_msg_size,
        allow_direct=True,
    )


def _advisory_stream(cfg: JetStreamSettings, name: str, description: str,
                     advisory: str) -> StreamConfig:
    # Advisories are plain NATS messages; capturing them in a stream means a
    # dead job is failed even if no handler was listening at that moment.
    return StreamConfig(
        name=name,
        description=description,
        subjects=[advisory],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=cfg.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=7 * 86400.0,
    )


def _advisory_consumer(cfg: JetStreamSettings, durable: str) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=16,
        num_replicas=cfg.replicas,
    )


def _runners_work(cfg: JetStreamSettings, durable: str, description: str,
                  subject: str) -> ConsumerConfig:
    """What the runners pull jobs from: the operator's ack wait (a runner
    heartbeats inside it) and max deliveries (past it, the dead-letter stream)."""
    return ConsumerConfig(
        durable_name=durable,
        description=description,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=cfg.ack_wait_s,
        max_deliver=cfg.max_deliver,
        # One job at a time per runner lane; this only caps a runaway fleet.
        max_ack_pending=1024,
        num_replicas=cfg.replicas,
    )


def _dispatcher_work(cfg: JetStreamSettings, durable: str, description: str,
                     filters: tuple[str, ...], ack_wait_s: float,
                     max_ack_pending: int) -> ConsumerConfig:
    """The webhook dispatcher's consumers redeliver for ever: a job's webhook
    or deadline is never given up on by the server, only by the dispatcher."""
    # One filter stays filter_subject: jetstream_setup compares the two fields
    # with what the server has, so the spelling of existing consumers holds.
    return ConsumerConfig(
        durable_name=durable,
        description=description,
        filter_subject=filters[0] if len(filters) == 1 else None,
        filter_subjects=list(filters) if len(filters) > 1 else None,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
        num_replicas=cfg.replicas,
    )


def jobs_stream(cfg: JetStreamSettings) -> StreamConfig:
    return _kept_stream(cfg, JOBS_STREAM, "Mochi Serve job events (the source of truth)",
                        subjects.ALL_JOB_EVENTS, cfg.max_age_days * 86400.0, 256 * 1024)


def _object_bucket(cfg: JetStreamSettings, bucket: str, description: str, max_age_s: float) -> ObjectStoreConfig:
    # On file and replicated like the job stream.
    return ObjectStoreConfig(bucket=bucket, description=description, ttl=max_age_s, storage=StorageType.FILE,
                             replicas=cfg.replicas)


def checkpoint_bucket(cfg: JetStreamSettings) -> ObjectStoreConfig:
    # Replicated: a checkpoint must outlive the node of the runner that wrote
    # it, which is when it is needed.
    return _object_bucket(
        cfg, CHECKPOINT_BUCKET,
        "Mochi Serve renders in progress: latents after the last saved step, one object per job",
        CHECKPOINT_MAX_AGE_S)


def preview_bucket(cfg: JetStreamSettings) -> ObjectStoreConfig:
    # Replicated, so the API reads a preview whichever node the runner's writes
    # landed on, and a node lost loses no preview.
    return _object_bucket(cfg, PREVIEW_BUCKET,
                          "Mochi Serve live previews: the newest WebP and PNG of each job rendering",
                          PREVIEW_MAX_AGE_S)


def preview_object(job_id: str, still: bool = False) -> str:
    """The object in PREVIEW_BUCKET of a job's animated preview (or its still)."""
    if not subjects.is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return f"{job_id}.{'png' if still else 'webp'}"


def dead_letter_stream(cfg: JetStreamSettings) -> StreamConfig:
    return _advisory_stream(cfg, DEAD_LETTER_STREAM,
                            "Max-deliveries advisories of the runners' consumer",
                            MAX_DELIVERIES_ADVISORY)


def dispatch_stream(cfg: JetStreamSettings, max_age_s: float = 7 * 86400.0) -> StreamConfig:
    # max_age must outlive the longest retry window and the furthest deadline.
    return _kept_stream(cfg, DISPATCH_STREAM,
                        "Webhooks to deliver and deadline timers (the webhook dispatcher's work)",
                        subjects.ALL_DISPATCH, max_age_s, 256 * 1024)


def dispatcher_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    """Reads job events and turns them into deliveries and timers; acks an
    event only once its work is stored in the dispatch stream."""
    return _dispatcher_work(cfg, DISPATCHER_CONSUMER,
                            "Webhook dispatcher: job events to deliveries and deadline timers",
                            subjects.DISPATCHER_SOURCES, ack_wait_s=30.0, max_ack_pending=1024)


def webhook_sender_consumer(cfg: JetStreamSettings, ack_wait_s: float = 60.0) -> ConsumerConfig:
    # A delivery waiting for its retry is nak'ed with a delay and still counts
    # as pending, hence the large max_ack_pending; ack_wait outlives one HTTP try.
    return _dispatcher_work(cfg, WEBHOOK_SENDER_CONSUMER,
                            "Webhook dispatcher: deliveries and their retries",
                            (subjects.ALL_WEBHOOK_DELIVERIES,), ack_wait_s=ack_wait_s,
                            max_ack_pending=100_000)


def deadline_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    return _dispatcher_work(cfg, DEADLINE_CONSUMER, "Webhook dispatcher: queued jobs' deadlines",
                            (subjects.ALL_DEADLINES,), ack_wait_s=30.0, max_ack_pending=100_000)


def runners_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    return _runners_work(cfg, RUNNERS_CONSUMER, "GPU runners pull submitted jobs",
                         subjects.ALL_SUBMITTED)


def dead_letter_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    return _advisory_consumer(cfg, DEAD_LETTER_CONSUMER)


def release_stream(cfg: JetStreamSettings, max_age_s: float = 7 * 86400.0) -> StreamConfig:
    """Limits retention rather than a work queue: a release stays after its ack,
    so the create-if-absent guard on `mochi.sched.released.<id>` holds while the
    stream keeps it (a job is never released twice), and a new scheduler leader
    can replay which jobs are out. max_age must outlive a job's longest queue
    plus run time; past it only the job stream's events remain, which is enough."""
    return _kept_stream(cfg, RELEASE_STREAM,
                        "Jobs the fair-share scheduler released to the runners (one per job)",
                        subjects.ALL_RELEASED, max_age_s, 4 * 1024)


def released_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    """The runners' work in fair mode: the same ack, heartbeat and redelivery
    rules as `gpu-runners`, on releases instead of submissions. Its num_waiting
    (pull requests of runners with a free lane) is the scheduler's capacity."""
    return _runners_work(cfg, RELEASED_CONSUMER,
                         "GPU runners pull released jobs (fair-share scheduling)",
                         subjects.ALL_RELEASED)


def release_dead_letter_stream(cfg: JetStreamSettings) -> StreamConfig:
    # The runners' dead-letter consumer knows only `gpu-runners`; releases that
    # ran out of deliveries are the scheduler's to fail.
    return _advisory_stream(cfg, RELEASE_DEAD_LETTER_STREAM,
                            "Max-deliveries advisories of the runners' released-jobs consumer",
                            RELEASE_MAX_DELIVERIES_ADVISORY)


def release_dead_letter_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    return _advisory_consumer(cfg, RELEASE_DEAD_LETTER_CONSUMER)

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


def checkpoint_bucket(cfg: JetStreamSettings) -> ObjectStoreConfig:
    # Replicated like the job stream: a checkpoint must outlive the node of
    # the runner that wrote it, which is when it is needed.
    return ObjectStoreConfig(
        bucket=CHECKPOINT_BUCKET,
        description="Mochi Serve renders in progress: latents after the last saved step, one object per job",
        ttl=CHECKPOINT_MAX_AGE_S,
        storage=StorageType.FILE,
        replicas=cfg.replicas,
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


def release_stream(cfg: JetStreamSettings, max_age_s: float = 7 * 86400.0) -> StreamConfig:
    """Limits retention rather than a work queue: a release stays after its ack,
    so the create-if-absent guard on `mochi.sched.released.<id>` holds while the
    stream keeps it (a job is never released twice), and a new scheduler leader
    can replay which jobs are out. max_age must outlive a job's longest queue
    plus run time; past it only the job stream's events remain, which is enough."""
    return StreamConfig(
        name=RELEASE_STREAM,
        description="Jobs the fair-share scheduler released to the runners (one per job)",
        subjects=[subjects.ALL_RELEASED],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=cfg.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=max_age_s,
        max_msg_size=4 * 1024,
        allow_direct=True,
    )


def released_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    """The runners' work in fair mode: the same ack, heartbeat and redelivery
    rules as `gpu-runners`, on releases instead of submissions. Its num_waiting
    (pull requests of runners with a free lane) is the scheduler's capacity."""
    return ConsumerConfig(
        durable_name=RELEASED_CONSUMER,
        description="GPU runners pull released jobs (fair-share scheduling)",
        filter_subject=subjects.ALL_RELEASED,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=cfg.ack_wait_s,
        max_deliver=cfg.max_deliver,
        max_ack_pending=1024,
        num_replicas=cfg.replicas,
    )


def release_dead_letter_stream(cfg: JetStreamSettings) -> StreamConfig:
    # The runners' dead-letter consumer knows only `gpu-runners`; releases that
    # ran out of deliveries are the scheduler's to fail.
    return StreamConfig(
        name=RELEASE_DEAD_LETTER_STREAM,
        description="Max-deliveries advisories of the runners' released-jobs consumer",
        subjects=[RELEASE_MAX_DELIVERIES_ADVISORY],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=cfg.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=7 * 86400.0,
    )


def release_dead_letter_consumer(cfg: JetStreamSettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=RELEASE_DEAD_LETTER_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=16,
        num_replicas=cfg.replicas,
    )

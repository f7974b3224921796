"""Create or update the streams and consumers that mochi_contracts.streams
declares, idempotently, waiting out a cluster that is still forming."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ObjectStoreConfig, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from mochi_common.backoff import patiently
from mochi_common.nats_conn import is_nats_down
from mochi_contracts.streams import (
    CHECKPOINT_BUCKET, PREVIEW_BUCKET, checkpoint_bucket, preview_bucket,
    DEAD_LETTER_CONSUMER, DEAD_LETTER_STREAM, DEADLINE_CONSUMER, DISPATCH_STREAM, DISPATCHER_CONSUMER, JOBS_STREAM,
    RUNNERS_CONSUMER, WEBHOOK_SENDER_CONSUMER, JetStreamSettings, dead_letter_consumer, dead_letter_stream,
    deadline_consumer, dispatch_stream, dispatcher_consumer, jobs_stream, runners_consumer, webhook_sender_consumer)

T = TypeVar("T")
log = structlog.get_logger()
# Services that start beside a forming cluster (a rollout starts every pod at
# once) wait it out instead of crash-looping, for this long.
SETUP_PATIENCE_S = 60.0

_STREAM_FIELDS = ("subjects", "retention", "storage", "discard", "num_replicas",
                  "duplicate_window", "max_age", "max_msg_size", "allow_direct", "description")
_CONSUMER_FIELDS = ("filter_subject", "filter_subjects", "ack_policy", "ack_wait", "max_deliver",
                    "max_ack_pending", "description")


def _differs(want: object, have: object, fields: tuple[str, ...]) -> list[str]:
    # A field left unset (None) takes the server's default, which is not a change.
    return [f for f in fields
            if getattr(want, f) is not None and getattr(want, f) != getattr(have, f)]


async def _while_cluster_forms(op: Callable[[], Awaitable[T]], what: str) -> T:
    def on_retry(err: Exception, delay: float) -> None:
        log.warning("jetstream.setup_waits", what=what, error=repr(err), retry_in_s=delay)

    return await patiently(op, is_nats_down, SETUP_PATIENCE_S, on_retry)


async def ensure_stream(js: JetStreamContext, want: StreamConfig) -> str:
    """Create or update a stream; return 'created', 'updated' or 'unchanged'."""
    return await _while_cluster_forms(lambda: _ensure_stream(js, want), f"stream {want.name}")


async def ensure_consumer(js: JetStreamContext, stream: str, want: ConsumerConfig) -> str:
    """Create or update a durable consumer; return what happened."""
    return await _while_cluster_forms(lambda: _ensure_consumer(js, stream, want), f"consumer {want.durable_name}")


async def _ensure_stream(js: JetStreamContext, want: StreamConfig) -> str:
    assert want.name  # every stream mochi_contracts.streams declares is named
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


async def _ensure_bucket(js: JetStreamContext, want: ObjectStoreConfig, patience_s: float) -> ObjectStore:
    """An object store bucket created if absent, its max age and replicas
    brought to the declared ones."""
    assert want.bucket  # every bucket mochi_contracts.streams declares is named
    name = want.bucket

    async def ensure() -> ObjectStore:
        try:
            bucket = await js.object_store(name)
        except BucketNotFoundError:
            return await js.create_object_store(name, config=want)
        have = (await js.stream_info(f"OBJ_{name}")).config
        if have.max_age != want.ttl or have.num_replicas != want.replicas:
            have.max_age, have.num_replicas = want.ttl, want.replicas
            await js.update_stream(have)
        return bucket

    def on_retry(err: Exception, delay: float) -> None:
        log.warning("jetstream.setup_waits", what=f"bucket {name}", error=repr(err), retry_in_s=delay)

    return await patiently(ensure, is_nats_down, patience_s, on_retry)


async def ensure_checkpoint_bucket(js: JetStreamContext, cfg: JetStreamSettings,
                                   patience_s: float = SETUP_PATIENCE_S) -> ObjectStore:
    """The runners' checkpoint bucket (mochi_contracts.streams.checkpoint_bucket)."""
    return await _ensure_bucket(js, checkpoint_bucket(cfg), patience_s)


async def ensure_preview_bucket(js: JetStreamContext, cfg: JetStreamSettings,
                                patience_s: float = SETUP_PATIENCE_S) -> ObjectStore:
    """The live previews' bucket (mochi_contracts.streams.preview_bucket), which
    runners write; the API only opens it (open_preview_bucket)."""
    return await _ensure_bucket(js, preview_bucket(cfg), patience_s)


async def open_preview_bucket(js: JetStreamContext) -> ObjectStore:
    """The previews bucket if it exists (BucketNotFoundError if not: no runner
    has made a preview yet); never creates it."""
    return await js.object_store(PREVIEW_BUCKET)


async def open_checkpoint_bucket(js: JetStreamContext) -> ObjectStore:
    """The checkpoint bucket if it exists (BucketNotFoundError if not); never creates it."""
    return await js.object_store(CHECKPOINT_BUCKET)

"""The streams and consumers of fair-share scheduling (declared in
mochi_contracts.streams), made idempotently by whoever starts first."""

from __future__ import annotations

from typing import Any

from nats.js.errors import NotFoundError

from mochi_common.jetstream_setup import ensure_consumer, ensure_stream
from mochi_contracts.streams import (
    JOBS_STREAM, RELEASE_DEAD_LETTER_CONSUMER, RELEASE_DEAD_LETTER_STREAM, RELEASE_STREAM, RELEASED_CONSUMER,
    JetStreamSettings, jobs_stream, release_dead_letter_consumer, release_dead_letter_stream, release_stream,
    released_consumer)


async def ensure_scheduler_topology(js: Any, cfg: JetStreamSettings, release_max_age_s: float) -> dict[str, str]:
    """The scheduler owns the release stream's settings and its dead letters;
    the released consumer is the runners' (its ack wait and deliveries are theirs)."""
    return {
        JOBS_STREAM: await ensure_stream(js, jobs_stream(cfg)),
        RELEASE_STREAM: await ensure_stream(js, release_stream(cfg, release_max_age_s)),
        RELEASE_DEAD_LETTER_STREAM: await ensure_stream(js, release_dead_letter_stream(cfg)),
        RELEASE_DEAD_LETTER_CONSUMER: await ensure_consumer(
            js, RELEASE_DEAD_LETTER_STREAM, release_dead_letter_consumer(cfg)),
    }


async def ensure_runner_release_topology(js: Any, cfg: JetStreamSettings) -> dict[str, str]:
    """What a runner in fair mode needs: the job stream, the release stream
    (created if absent, never updated here, so a runner does not undo the
    scheduler's max age), and its released-jobs consumer."""
    done = {JOBS_STREAM: await ensure_stream(js, jobs_stream(cfg))}
    try:
        await js.stream_info(RELEASE_STREAM)
        done[RELEASE_STREAM] = "unchanged"
    except NotFoundError:
        done[RELEASE_STREAM] = await ensure_stream(js, release_stream(cfg))
    done[RELEASED_CONSUMER] = await ensure_consumer(js, RELEASE_STREAM, released_consumer(cfg))
    return done

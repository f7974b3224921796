"""How long videos are kept. The API answers 410 once a video's expires_at has
passed (see job_resource.video_expires_at), and 404 for its thumbnails; this
makes the store forget them too: an S3 lifecycle rule on the prefix all of a
job's files share (mochi_contracts.storage) where the store takes one (whole
days), a sweep otherwise, which deletes a job's video and thumbnails together
and any file of a job left behind (an orphan) once it is old enough."""

from __future__ import annotations

import asyncio

import structlog

from mochi_common.storage import VideoStore

log = structlog.get_logger()


async def keep_videos(store: VideoStore, lifetime_s: float, sweep_interval_s: float) -> None:
    if lifetime_s <= 0:
        return  # kept for ever
    try:
        if await asyncio.to_thread(store.set_video_lifetime, lifetime_s):
            log.info("retention.lifecycle_rule", lifetime_s=lifetime_s)
            return
    except Exception as err:  # a store that refuses lifecycle rules, or no right to set one
        log.warning("retention.no_lifecycle_rule", error=repr(err))
    while True:
        try:
            removed = await asyncio.to_thread(store.sweep_expired, lifetime_s)
            if removed:
                log.info("retention.swept", files=removed)
        except Exception as err:
            log.warning("retention.sweep_failed", error=repr(err))
        await asyncio.sleep(sweep_interval_s)

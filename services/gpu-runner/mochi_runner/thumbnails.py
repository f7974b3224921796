"""A completed job's thumbnails: a JPEG poster and a short muted clip, made
from the decoded frames and stored beside its video (keys from
mochi_contracts.storage), so that they expire with it.

They are a convenience for the gallery, never a reason to fail a job: a
failure to make or store them is a warning in the runner's log and the
`mochi_runner_thumbnails{outcome="failed"}` metric, and the job completes
without them (the API answers 404 for them, as before they exist). Stores
are written with put-new semantics, like the video: a second delivery of the
same job never replaces what the first one stored."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mochi_common.storage import VideoStore
from mochi_common.storage.retry import RetryPolicy, call_with_retries
from mochi_contracts.storage import (THUMBNAIL_CLIP_CONTENT_TYPE, THUMBNAIL_CONTENT_TYPE, thumbnail_clip_key,
                                     thumbnail_key, video_key)
from mochi_runner import metrics
from mochi_runner.video_encode import decode_mp4, encode_clip, encode_poster

OnRetry = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ThumbnailsStored:
    poster_bytes: int
    clip_bytes: int
    # False when an earlier delivery of the job had stored them already.
    fresh: bool


def make_thumbnails(frames: np.ndarray, fps: int, folder: Path) -> tuple[Path, Path]:
    """The poster and the clip of T x H x W x 3 uint8 frames, as files in `folder`."""
    poster, clip = folder / "poster.jpg", folder / "clip.mp4"
    encode_poster(frames, poster)
    encode_clip(frames, fps, clip)
    return poster, clip


async def store_thumbnails(store: VideoStore, job_id: str, frames: np.ndarray, fps: int, *,
                           retry: RetryPolicy, log: Any, on_retry: OnRetry | None = None) -> ThumbnailsStored | None:
    """Make the job's thumbnails from its frames and store them, riding out
    the store's short outages as the video's upload does; None if that failed
    (logged and counted: the caller completes the job all the same)."""
    try:
        with tempfile.TemporaryDirectory(prefix="mochi-thumbs-") as tmp:
            poster, clip = await asyncio.to_thread(make_thumbnails, frames, fps, Path(tmp))
            return await _store(store, job_id, poster, clip, retry, on_retry)
    except Exception as err:  # the job's video is stored: its thumbnails must not fail it
        _failed(log, job_id, err)
        return None


async def store_missing_thumbnails(store: VideoStore, job_id: str, *, retry: RetryPolicy, log: Any,
                                   on_retry: OnRetry | None = None) -> ThumbnailsStored | None:
    """For a delivery that finds the job's video stored (the runner that stored
    it died before its final event): the thumbnails, made from the stored
    video, unless that runner stored them too. None if that failed."""
    try:
        sizes = [await call_with_retries(partial(store.size, key), retry, "size", on_retry=on_retry, job_id=job_id)
                 for key in (thumbnail_key(job_id), thumbnail_clip_key(job_id))]
        if sizes[0] is not None and sizes[1] is not None:
            metrics.THUMBNAILS.labels(outcome="already_stored").inc()
            return ThumbnailsStored(poster_bytes=sizes[0], clip_bytes=sizes[1], fresh=False)
        with tempfile.TemporaryDirectory(prefix="mochi-thumbs-") as tmp:
            video = Path(tmp) / "video.mp4"
            found = await call_with_retries(lambda: store.fetch(video_key(job_id), video), retry, "fetch",
                                            on_retry=on_retry, job_id=job_id)
            if not found:
                raise FileNotFoundError(f"no {video_key(job_id)} in the store to make thumbnails from")
            frames, fps = await asyncio.to_thread(decode_mp4, video)
            poster, clip = await asyncio.to_thread(make_thumbnails, frames, fps, Path(tmp))
            del frames
            return await _store(store, job_id, poster, clip, retry, on_retry)
    except Exception as err:  # the job completes without thumbnails
        _failed(log, job_id, err)
        return None


async def _store(store: VideoStore, job_id: str, poster: Path, clip: Path, retry: RetryPolicy,
                 on_retry: OnRetry | None) -> ThumbnailsStored:
    fresh = False
    for key, path, content_type in ((thumbnail_key(job_id), poster, THUMBNAIL_CONTENT_TYPE),
                                    (thumbnail_clip_key(job_id), clip, THUMBNAIL_CLIP_CONTENT_TYPE)):
        stored = await call_with_retries(partial(store.put_new, key, path, content_type), retry, "put_new",
                                         on_retry=on_retry, job_id=job_id)
        fresh = fresh or stored
    metrics.THUMBNAILS.labels(outcome="stored" if fresh else "already_stored").inc()
    return ThumbnailsStored(poster_bytes=poster.stat().st_size, clip_bytes=clip.stat().st_size, fresh=fresh)


def _failed(log: Any, job_id: str, err: Exception) -> None:
    metrics.THUMBNAILS.labels(outcome="failed").inc()
    log.warning("job.thumbnails_failed", job_id=job_id, error=f"{type(err).__name__}: {err}")

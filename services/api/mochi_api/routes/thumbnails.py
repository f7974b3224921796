"""/v1/jobs/{id}/thumbnail and /thumbnail/clip: a completed job's poster (JPEG)
and its short muted clip (MP4), stored by the runner beside the video.

Same owner rules as the video (routes/jobs.py: someone else's job reads as
missing), and the same ways out of the store: a stream with Range from a
filesystem store, a redirect to a presigned URL from S3. Unlike the video,
every absence is a 404 (before the job completed, after retention deleted
its video, or where the runner could not make them): a tile shows no poster
either way, and the contract keeps `links.thumbnail*` always present."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import PurePosixPath

from litestar import Controller, Request, Response
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect

from mochi_api import openapi_docs as docs
from mochi_api.context import Caller
from mochi_api.head import get_and_head, presign_method
from mochi_api.job_resource import video_expires_at
from mochi_api.problems import not_found, unavailable
from mochi_api.job_access import api_context, visible_job
from mochi_api.video_response import video_response
from mochi_common.storage import TransientStoreError
from mochi_contracts.events import utcnow
from mochi_contracts.storage import (THUMBNAIL_CLIP_CONTENT_TYPE, THUMBNAIL_CONTENT_TYPE, thumbnail_clip_key,
                                     thumbnail_key)

# A job's files never change under their key (the runner stores them once,
# put-new), so a browser may keep them until they expire; `private`: they are
# the owner's, and a shared cache must not hand them to another caller.
MAX_AGE_S = 86400

THUMBNAIL_RESPONSES = {
    200: ResponseSpec(data_container=bytes, media_type=THUMBNAIL_CONTENT_TYPE,
                      description="A JPEG of a frame a third into the video, at most 480 px wide"),
    307: ResponseSpec(data_container=None, description="Redirect to a presigned URL of the object store"),
    401: docs.UNAUTHORIZED, 404: docs.NOT_FOUND, 503: docs.UNAVAILABLE}
CLIP_RESPONSES = {
    200: ResponseSpec(data_container=bytes, media_type=THUMBNAIL_CLIP_CONTENT_TYPE,
                      description="H.264 MP4, no audio, the first 3 s at most, about 320 px wide (206 for a Range)"),
    307: ResponseSpec(data_container=None, description="Redirect to a presigned URL of the object store"),
    401: docs.UNAUTHORIZED, 404: docs.NOT_FOUND, 503: docs.UNAVAILABLE}


def cache_control(expires_at: datetime | None, now: datetime) -> str:
    """`private, max-age=...`, never past the moment the job's files expire."""
    max_age = MAX_AGE_S
    if expires_at is not None:
        max_age = min(max_age, max(int((expires_at - now).total_seconds()), 0))
    return f"private, max-age={max_age}"


async def _stored(state: State, caller: Caller, request: Request, job_id: str, key: str, what: str,
                  media_type: str) -> Response:
    ctx = api_context(state)
    job = (await visible_job(ctx, caller, job_id)).state
    if job.status != "completed" or job.video is None:
        raise not_found(f"job {job_id} is {job.status}; its {what} exists once it is completed")
    now = utcnow()
    expires_at = video_expires_at(job, ctx.settings.video_lifetime_s)
    if expires_at is not None and now >= expires_at:
        raise not_found(f"the {what} of job {job_id} expired with its video at {expires_at.isoformat()}")
    missing = not_found(f"job {job_id} has no {what} stored (its runner could not make one, "
                        "or it was deleted with the video)")
    path = ctx.store.local_path(key)
    if path is None:
        try:
            # A presigned URL is made without asking the store, so ask first:
            # a redirect to the store's own 404 would not be problem+json.
            size = await asyncio.to_thread(ctx.store.size, key)
        except TransientStoreError as err:
            raise unavailable(f"the video store is not reachable: {err}") from err
        url = (ctx.store.presigned_url(key, ctx.settings.video_url_expiry_s, presign_method(request))
               if size is not None else None)
        if url is None:
            raise missing
        return Redirect(url, status_code=307)
    try:
        response = video_response(path, request.headers.get("range"), PurePosixPath(key).name, media_type)
    except FileNotFoundError:  # swept between the check and the open
        raise missing from None
    response.set_header("Cache-Control", cache_control(expires_at, now))
    return response


class ThumbnailsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @get_and_head("/{job_id:str}/thumbnail", summary="The completed job's poster (JPEG)", responses=THUMBNAIL_RESPONSES)
    async def thumbnail(self, job_id: str, state: State, request: Request, caller: Caller) -> Response:
        return await _stored(state, caller, request, job_id, thumbnail_key(job_id), "poster",
                             THUMBNAIL_CONTENT_TYPE)

    @get_and_head("/{job_id:str}/thumbnail/clip", summary="A short muted clip of the completed job's video (MP4)",
         description="Loops well in a tile: the first seconds of the video, small, without audio.",
         responses=CLIP_RESPONSES)
    async def thumbnail_clip(self, job_id: str, state: State, request: Request, caller: Caller) -> Response:
        return await _stored(state, caller, request, job_id, thumbnail_clip_key(job_id), "thumbnail clip",
                             THUMBNAIL_CLIP_CONTENT_TYPE)

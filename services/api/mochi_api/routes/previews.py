"""/v1/jobs/{id}/preview: the newest live preview of a job rendering, read from
the previews bucket the runner writes (mochi_contracts.streams.PREVIEW_BUCKET).

Same owner rules as the video (someone else's job reads as missing). A job
not yet with a preview answers 409 (one is coming); a final job 404 (its
runner deleted its previews at the final event). The bytes change every few
seconds under one URL, hence `no-store`; the SSE `preview` event's link adds
`?step=k` so a client that does cache sees a new URL per preview."""

from __future__ import annotations

import asyncio
from typing import Annotated

from litestar import Controller, Response
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError

from mochi_api import openapi_docs as docs
from mochi_api.context import Caller
from mochi_api.head import get_and_head
from mochi_api.problems import not_found, problem, unavailable
from mochi_api.job_access import api_context, visible_job
from mochi_common.jetstream_setup import open_preview_bucket
from mochi_contracts.job_state import FINAL_STATUSES
from mochi_contracts.streams import PREVIEW_CONTENT_TYPE, PREVIEW_STILL_CONTENT_TYPE, preview_object

# A read of the bucket that takes longer is a NATS in trouble: 503, retry.
READ_TIMEOUT_S = 10.0

PREVIEW_RESPONSES = {
    200: ResponseSpec(data_container=bytes, media_type=PREVIEW_CONTENT_TYPE,
                      description="An animated WebP (loops) of 4 frames across the clip at about a quarter of "
                                  "the output resolution; with `still=true` one PNG frame (image/png)"),
    401: docs.UNAUTHORIZED, 404: docs.NOT_FOUND,
    409: docs._problem(409, "preview-not-ready", "No preview yet",
                       "job 0123456789abcdef0123456789abcdef is running and has no preview yet; "
                       "one comes within a few seconds of its first steps"),
    503: docs.UNAVAILABLE}


class PreviewsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @get_and_head("/{job_id:str}/preview", summary="The live preview of a running job",
         description="What the model currently expects the video to be (its estimate of the clean video "
                     "after the newest previewed step, projected from the latents to RGB), renewed at most "
                     "every MOCHI_PREVIEW_EVERY_S seconds (default 3) while the job denoises; each new one "
                     "is announced by an `event: preview` on the job's event stream. 409 while the job has "
                     "none yet, 404 once it is final (previews are deleted at its end) and for another "
                     "owner's job. `step` is ignored (the event's link carries it to make each URL new).",
         responses=PREVIEW_RESPONSES)
    async def preview(
        self, job_id: str, state: State, caller: Caller,
        still: Annotated[bool, Parameter(query="still", description="One PNG frame instead of the WebP")] = False,
        step: Annotated[int | None, Parameter(query="step", ge=0, le=1000, required=False,
                                              description="Ignored: makes each preview's URL new")] = None,
    ) -> Response:
        ctx = api_context(state)
        job = (await visible_job(ctx, caller, job_id)).state
        if job.status in FINAL_STATUSES:
            raise not_found(f"job {job_id} is {job.status}; live previews are deleted when a job ends")
        not_yet = problem(409, "preview-not-ready", "No preview yet",
                          f"job {job_id} is {job.status} and has no preview yet; one comes within a few "
                          "seconds of its first steps (watch its event stream for `preview`)")
        try:
            bucket = await asyncio.wait_for(open_preview_bucket(ctx.js), READ_TIMEOUT_S)
            found = await asyncio.wait_for(bucket.get(preview_object(job_id, still)), READ_TIMEOUT_S)
        except (BucketNotFoundError, ObjectNotFoundError):
            raise not_yet from None  # no runner has made one (of this job) yet
        except (TimeoutError, NatsTimeout, NoRespondersError) as err:
            raise unavailable(f"the previews bucket is not reachable: {err!r}") from err
        if not found.data:
            raise not_yet
        return Response(content=bytes(found.data),
                        media_type=PREVIEW_STILL_CONTENT_TYPE if still else PREVIEW_CONTENT_TYPE,
                        headers={"Cache-Control": "no-store"})

"""/v1/jobs: submit, get, list, download, cancel."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Annotated

import msgspec
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from litestar import Controller, Request, Response, post
from litestar.datastructures import State
from litestar.params import Body, Parameter
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.response import Redirect

from mochi_api.context import ApiContext, Caller
from mochi_api.job_access import api_context, visible_job
from mochi_api.job_reader import JobRead
from mochi_api.job_resource import to_resource, video_expires_at
from mochi_api.event_replay import replay
from mochi_api.head import get_and_head, presign_method
from mochi_api import idempotency, submission
from mochi_api.bounds import (MAX_CANCEL_AFTER_CHARS, MAX_CURSOR_CHARS, MAX_IDEMPOTENCY_KEY_CHARS,
                              MAX_STATUS_VALUES, ascii_int)
from mochi_api import openapi_docs as docs
from mochi_api.problems import invalid_fields, problem
from mochi_api.video_response import video_response
from mochi_common.nats_conn import publish_event, publish_final
from mochi_contracts import catalog, subjects
from mochi_contracts.events import JobCancelled, JobCancelRequested, JobLog, JobSubmitted, utcnow
from mochi_contracts.job_state import FINAL_STATUSES, STATUSES, new_state
from mochi_contracts.jobs import FieldError, JobRequest, semantic_errors
from mochi_contracts.resources import Job, JobList, LogLine, LogList
from mochi_contracts.storage import video_key


def _base(ctx: ApiContext) -> str:
    return ctx.settings.public_url.rstrip("/")


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    # Strict: only the exact spelling _encode_cursor makes, so no other text
    # (padding, stray characters, other scripts' digits) reaches the catalog.
    seq = None
    if len(cursor) <= MAX_CURSOR_CHARS and cursor.isascii():
        try:
            raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        except ValueError:
            raw = b""
        if raw.startswith(b"s"):
            seq = ascii_int(raw[1:].decode("ascii", errors="replace"))
    if seq is None or seq == 0 or _encode_cursor(seq) != cursor:
        raise invalid_fields([FieldError("cursor", "not a cursor this API handed out")])
    return seq


async def _check_queue_cap(ctx: ApiContext, caller: Caller) -> None:
    cap = ctx.settings.max_queued_per_owner
    if cap == 0:
        return
    try:
        page = await ctx.reader.list(catalog.ListJobs(owner=caller.owner, status=["queued"], limit=cap))
    except (NoRespondersError, NatsTimeout):
        return  # without the catalog the cap cannot be counted; submitting matters more
    except ProblemDetailsException as err:
        if err.status_code != 503:
            raise
        return  # a catalog replica that answers with an error: likewise
    if len(page.jobs) >= cap:
        exc = problem(429, "too-many-queued", "Too many queued jobs",
                      f"{caller.owner} has {cap} queued jobs, the most allowed; wait for some to start")
        exc.headers = {"Retry-After": "30"}
        raise exc


def _resource(ctx: ApiContext, read: JobRead) -> Job:
    return to_resource(read.state, read.queue_position, _base(ctx), read.estimated_start,
                       ctx.settings.video_lifetime_s, read.after_steps_pace)


class JobsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @post("/", status_code=202, summary="Submit a job",
          description="Queues one video and answers at once with the job and its Location. "
                      "With an Idempotency-Key header, a retry with the same body returns the same job "
                      "(for a day, across API replicas); another body under that key is refused.",
          responses=docs.SUBMIT_RESPONSES)
    async def submit(
        self, data: Annotated[JobRequest, Body(examples=docs.SUBMIT_EXAMPLES)], state: State, caller: Caller,
        request: Request,
        idempotency_key: Annotated[str | None, Parameter(
            header="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS, required=False,
            description="Any string unique to this submission, e.g. a UUID")] = None,
        cancel_after: Annotated[str | None, Parameter(
            header="Cancel-After", max_length=MAX_CANCEL_AFTER_CHARS, required=False,
            description="Sets `deadline` this long from now: 90s, 5m, 1h30m")] = None,
    ) -> Response[Job]:
        ctx = api_context(state)
        errors = (submission.strict_errors(await request.body()) or semantic_errors(data)
                  or ctx.keys.priority_errors(caller, data))
        if errors:
            raise invalid_fields(errors)
        checked, errors = await submission.checked(data, cancel_after, ctx.settings, utcnow())
        if errors:
            raise invalid_fields(errors)
        job_id, seed = uuid.uuid4().hex, data.seed if data.seed is not None else secrets.randbelow(2**32)
        if idempotency_key is not None:
            try:
                held, fresh = await idempotency.claim(ctx.idempotency, caller.owner, idempotency_key,
                                                      idempotency.Claim(job_id, idempotency.body_hash(data), seed))
            except idempotency.KeyReused:
                raise invalid_fields([FieldError(
                    "Idempotency-Key", "already used for a submission with another body")]) from None
            job_id, seed = held.job_id, held.seed
            if not fresh and (read := await ctx.reader.get(job_id, caller.owner_filter)) is not None:
                return Response(_resource(ctx, read), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})
            if fresh:
                try:
                    await _check_queue_cap(ctx, caller)
                except ProblemDetailsException:
                    await idempotency.release(ctx.idempotency, caller.owner, idempotency_key)
                    raise
        else:
            await _check_queue_cap(ctx, caller)
        # The seed is fixed now so every delivery of this job renders the same video.
        event = JobSubmitted(job_id=job_id, request=msgspec.structs.replace(checked, seed=seed),
                             owner=caller.owner)
        seq = await publish_event(ctx.js, event)
        job = to_resource(new_state(event, seq), None, _base(ctx))
        return Response(job, status_code=202, headers={"Location": job.links.self})

    @get_and_head("/{job_id:str}", summary="Get a job", responses=docs.GET_RESPONSES)
    async def get_job(self, job_id: str, state: State, caller: Caller) -> Job:
        ctx = api_context(state)
        return _resource(ctx, await visible_job(ctx, caller, job_id))

    @get_and_head("/", summary="List jobs, newest first", responses=docs.LIST_RESPONSES)
    async def list_jobs(
        self, state: State, caller: Caller,
        status: Annotated[list[str] | None, Parameter(
            description=f"Only jobs in these states: {', '.join(STATUSES)}")] = None,
        limit: Annotated[int, Parameter(ge=1, le=catalog.MAX_PAGE)] = 20,
        cursor: Annotated[str | None, Parameter(description="next_cursor of the previous page",
                                                max_length=MAX_CURSOR_CHARS)] = None,
    ) -> JobList:
        ctx = api_context(state)
        if status is not None and len(status) > MAX_STATUS_VALUES:
            raise invalid_fields([FieldError("status", f"at most {MAX_STATUS_VALUES} values")])
        bad = [s for s in status or [] if s not in STATUSES]
        if bad:
            # Echoed cut short: the query string may be long.
            raise invalid_fields([FieldError("status",
                                             f"unknown status {bad[0][:40]!r}; one of {', '.join(STATUSES)}")])
        query = catalog.ListJobs(owner=caller.owner_filter,
                                 status=status or None,  # type: ignore[arg-type]  # each one is in STATUSES (above)
                                 limit=limit, before_seq=_decode_cursor(cursor) if cursor else None)
        page = await ctx.reader.list(query)
        base = _base(ctx)
        return JobList(jobs=[to_resource(j, None, base, None, ctx.settings.video_lifetime_s) for j in page.jobs],
                       next_cursor=_encode_cursor(page.next_before_seq) if page.next_before_seq else None)

    @get_and_head("/{job_id:str}/video", summary="Download the MP4",
         description="Supports Range requests for seeking; with an S3 store, redirects to a presigned URL.",
         responses=docs.VIDEO_RESPONSES)
    async def video(self, job_id: str, state: State, request: Request, caller: Caller) -> Response:
        ctx = api_context(state)
        job = (await visible_job(ctx, caller, job_id)).state
        if job.status != "completed" or job.video is None:
            raise problem(409, "video-not-ready", "No video yet",
                          f"job {job_id} is {job.status}; its video exists once it is completed")
        expires_at = video_expires_at(job, ctx.settings.video_lifetime_s)
        if expires_at is not None and utcnow() >= expires_at:
            raise problem(410, "video-gone", "Video gone",
                          f"the video of job {job_id} expired at {expires_at.isoformat()} and was deleted",
                          expired_at=expires_at.isoformat())
        # The key is the job's own, whatever its events say (an event names no other job's video).
        key = video_key(job_id)
        url = ctx.store.presigned_url(key, ctx.settings.video_url_expiry_s, presign_method(request))
        if url is not None:
            return Redirect(url, status_code=307)
        path = ctx.store.local_path(key)
        if path is None:
            raise problem(410, "video-gone", "Video gone", f"the video of job {job_id} is no longer stored")
        return video_response(path, request.headers.get("range"), f"{job_id}.mp4")

    @post("/{job_id:str}/cancel", status_code=202, summary="Cancel a job",
          description="A queued job never starts; a running one stops within one step. 409 once finished.",
          responses=docs.CANCEL_RESPONSES)
    async def cancel(self, job_id: str, state: State, caller: Caller) -> Job:
        ctx = api_context(state)
        job = (await visible_job(ctx, caller, job_id)).state
        if job.status in FINAL_STATUSES:
            raise problem(409, "job-finished", "Job already finished", f"job {job_id} is {job.status}")
        await publish_event(ctx.js, JobCancelRequested(job_id=job_id, requested_by=caller.owner))
        if job.status == "queued":
            # Final at once; a runner that pulls it later acks it without work,
            # and one that started it meanwhile stops on this very event.
            await publish_final(ctx.js, JobCancelled(job_id=job_id, reason="cancelled while queued"))
        return _resource(ctx, await visible_job(ctx, caller, job_id))

    @get_and_head("/{job_id:str}/logs", summary="The job's log lines",
         description="What the runner wrote about this job (warm-up state, warnings, the summary of an "
                     "error), oldest first. The same lines arrive live as `log` events on the job's "
                     "event stream. An event on this job's subjects that the service refused shows here "
                     "as a `warning` line saying why (never what it carried).",
         responses=docs.LOGS_RESPONSES)
    async def logs(self, job_id: str, state: State, caller: Caller) -> LogList:
        ctx = api_context(state)
        await visible_job(ctx, caller, job_id)  # 404 unless the caller may see it
        lines: list[LogLine] = []
        # Every subject of the job, decoded at the boundary: its log lines, and its refusals.
        async for raw in replay(ctx.js, subjects.job_events(job_id), 1):
            if isinstance(raw.event, JobLog):
                lines.append(LogLine(seq=raw.seq, time=raw.event.time, level=raw.event.level,
                                     message=raw.event.message, runner=raw.event.runner))
            elif raw.rejected:
                lines.append(LogLine(seq=raw.seq, time=raw.time or utcnow(), level="warning",
                                     message=f"event {raw.seq} on {raw.subject} refused: {raw.reason}",
                                     runner=None))
        return LogList(logs=lines)

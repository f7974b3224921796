"""POST /v1/estimates: how long a job would take here, before it is submitted.

The body is the job request, decoded as strictly as a submission; nothing is
queued. The answer is this deployment's measured pace scaled to the job
(mochi_contracts.job_cost), and its start behind the running jobs' own
finishes and the queue (mochi_api.estimates), so the web app and any other
client keep no pace formula of their own."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from litestar import Request, post
from litestar.datastructures import State
from litestar.params import Body

from mochi_api import estimates, submission
from mochi_api import openapi_docs as docs
from mochi_api.context import ApiContext, Caller
from mochi_api.problems import invalid_fields
from mochi_contracts import catalog, job_cost, pace
from mochi_contracts.events import utcnow
from mochi_contracts.jobs import JobRequest, semantic_errors
from mochi_contracts.resources import JobEstimate

# Completed jobs the pace is measured over, and queued or running jobs read (one catalog page each).
RECENT = catalog.MAX_PAGE


@post("/v1/estimates", status_code=200, summary="Estimate a job before submitting it",
      description="The body is a job request, checked like a submission (422 naming the field); nothing is "
                  "queued. Answers the seconds of work this job would take here (the measured seconds per step "
                  "of the completed jobs nearest in size, scaled by its size and steps, plus the decode, encode "
                  "and store at their measured pace), when it would start behind the running and queued jobs "
                  "and finish, and `beyond_experience` when it costs more than "
                  f"{job_cost.FAR_BEYOND:g} times the largest job this deployment completed (or none completed "
                  "yet): the numbers are then a guess. Times are null until a job has completed here.",
      tags=["jobs"], responses={401: docs.UNAUTHORIZED, 422: docs.INVALID, 503: docs.UNAVAILABLE})
async def estimate_job(data: Annotated[JobRequest, Body(examples=docs.SUBMIT_EXAMPLES)], state: State,
                       caller: Caller, request: Request) -> JobEstimate:
    ctx: ApiContext = state.ctx
    errors = submission.strict_errors(await request.body()) or semantic_errors(data)
    if errors:
        raise invalid_fields(errors)
    # The deployment's pace and queue, whoever's jobs they are: only sums and a ratio leave here.
    done = (await ctx.reader.list(catalog.ListJobs(status=["completed"], limit=RECENT))).jobs
    running = (await ctx.reader.list(catalog.ListJobs(status=["running"], limit=RECENT))).jobs
    queued = (await ctx.reader.list(catalog.ListJobs(status=["queued"], limit=RECENT))).jobs
    now = utcnow()
    measured = job_cost.measured(done)
    after = pace.after_steps_pace(done)
    work = job_cost.work_seconds(data, measured, after)
    # The jobs ahead each take about their own work; before anything was measured, nothing is known.
    ahead = [w for w in (job_cost.work_seconds(j.request, measured, after) for j in queued) if w is not None]
    mean_ahead = sum(ahead) / len(ahead) if ahead else pace.mean_run_seconds(done)
    # A running job before its first step frees its lane after its own work, as in a queued job's estimate.
    busy = estimates.lane_free_at(running, after, mean_ahead, now,
                                  lambda state: job_cost.work_seconds(state.request, measured, after))
    start = estimates.estimated_start(len(queued) + 1, busy, len(busy), mean_ahead, now)
    ratio = job_cost.times_largest(data, measured)
    return JobEstimate(
        work_seconds=round(work, 1) if work is not None else None,
        queue_seconds=round((start - now).total_seconds(), 1) if start is not None else None,
        estimated_start_at=start,
        estimated_finish_at=start + timedelta(seconds=work) if start is not None and work is not None else None,
        beyond_experience=job_cost.beyond_experience(data, measured),
        times_largest=round(ratio, 2) if ratio is not None else None,
        measured_jobs=len(measured))

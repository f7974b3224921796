"""Which job a caller may see: the one rule of every route that takes a job id."""

from __future__ import annotations

from litestar.datastructures import State

from mochi_api.context import ApiContext, Caller
from mochi_api.job_reader import JobRead
from mochi_api.problems import not_found
from mochi_contracts import subjects


def api_context(state: State) -> ApiContext:
    return state.ctx


async def visible_job(ctx: ApiContext, caller: Caller, job_id: str) -> JobRead:
    """The job, or 404: someone else's job is indistinguishable from a missing
    one, and text that is no job id never reaches the catalog (nor the answer)."""
    if not subjects.is_job_id(job_id):
        raise not_found("no job has that id")
    found = await ctx.reader.get(job_id, caller.owner_filter)
    if found is None:
        raise not_found(f"no job {job_id}")
    return found

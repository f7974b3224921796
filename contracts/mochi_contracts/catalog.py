"""Request and reply bodies of the catalog's query service (nats.micro).

The same JSON works from the CLI:
    nats req mochi.catalog.jobs.get '{"job_id": "<id>"}'
    nats req mochi.catalog.jobs.list '{"limit": 5, "status": ["queued"]}'"""

from __future__ import annotations

from typing import Annotated

import msgspec

from mochi_contracts.job_state import JobState, Status

MAX_PAGE = 100


class GetJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    # None means "any owner" (an admin, or the embedded default without keys).
    owner: str | None = None


class GetJobReply(msgspec.Struct, frozen=True, kw_only=True):
    job: JobState | None
    # Position among queued jobs (1 = next), when the job is queued.
    queue_position: int | None = None
    # Mean seconds of recent renders and the jobs running now, for a start estimate.
    mean_job_seconds: float | None = None
    running_jobs: int = 0
    applied_seq: int


class ListJobs(msgspec.Struct, frozen=True, kw_only=True):
    owner: str | None = None
    status: list[Status] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 20
    # Jobs submitted strictly before this stream sequence (newest first).
    before_seq: int | None = None


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[JobState]
    # The sequence to pass as before_seq for the next page, or None at the end.
    next_before_seq: int | None
    applied_seq: int

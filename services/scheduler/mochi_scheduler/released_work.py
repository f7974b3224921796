"""A runner in fair mode: the scheduler's release of a job, handed to the
runner's job handler as the job's submission.

The handler reads a submission's data, headers and subject; here those are the
submitted event's, read from the job stream by a get from the stream leader (the stream is the
one truth: a release names a job, it does not copy it), while everything the
handler settles (ack, nak, term, in-progress heartbeats) and the delivery count
it takes its attempt number from are the release's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from mochi_common.consumer import Outcome, Term
from mochi_contracts import subjects
from mochi_contracts.streams import JOBS_STREAM


class ReleasedSubmission:
    def __init__(self, release: Msg, submission: Any):
        self._release = release
        self.subject = submission.subject or ""
        self.data = submission.data or b""
        self.headers = submission.headers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._release, name)


class ReleasedWork:
    """The consumer runtime's handler for releases. `looking_up` is nonzero
    while a release's submission is being read: the runner's room check waits
    for it, since the job claims its GPU ticket only once the handler has it."""

    def __init__(self, js: Any, handle: Callable[[Any], Awaitable[Outcome]]):
        self.js = js
        self.handle_submission = handle
        self.looking_up = 0

    async def handle(self, msg: Msg) -> Outcome:
        job_id = subjects.released_job_id(msg.subject)
        if job_id is None:
            return Term(f"not a release: {msg.subject[:200]}")
        self.looking_up += 1
        try:
            # From the stream leader: a replica a moment behind must not make a job look unknown.
            submission = await self.js.get_last_msg(JOBS_STREAM, subjects.event_subject(job_id, "submitted"))
        except NotFoundError:
            return Term(f"released job {job_id} has no submission in {JOBS_STREAM}")
        finally:
            self.looking_up -= 1
        # No await between here and the handler taking its ticket.
        return await self.handle_submission(ReleasedSubmission(msg, submission))

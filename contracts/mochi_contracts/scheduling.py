"""What the fair-share scheduler writes for the runners (docs/scheduling.md).

A release names a job a runner may take now; the runner reads the job's
submission from the job stream (the one source of truth), so a release
carries only what helps a person reading `nats stream view MOCHI_RELEASED`."""

from __future__ import annotations

from typing import Final

import msgspec

from mochi_contracts.events import JobId, Name, Time, utcnow
from mochi_contracts.jobs import Priority

RANK: Final[dict[str, int]] = {"high": 0, "normal": 1, "low": 2}


class JobRelease(msgspec.Struct, frozen=True, kw_only=True):
    job_id: JobId
    owner: Name
    priority: Priority
    # The job stream sequence of its submission.
    submitted_seq: int
    scheduler: Name
    time: Time = msgspec.field(default_factory=utcnow)


encode_release = msgspec.json.Encoder().encode
decode_release = msgspec.json.Decoder(JobRelease).decode

"""Every NATS subject of the system. Services build subjects only through these.

Job events:   mochi.jobs.<job_id>.<type>        submitted, started, progress, cancel_requested
Final events: mochi.jobs.<job_id>.final.<type>  completed, failed, cancelled
The extra `final` token lets one guard (expected last sequence 0 on
`mochi.jobs.<id>.final.*`) make the final event unique per job, for ever."""

from __future__ import annotations

import re
from typing import Final

from mochi_contracts.events import FINAL_TYPES

JOBS_PREFIX: Final = "mochi.jobs"
ALL_JOB_EVENTS: Final = f"{JOBS_PREFIX}.>"
ALL_SUBMITTED: Final = f"{JOBS_PREFIX}.*.submitted"
ALL_CANCEL_REQUESTED: Final = f"{JOBS_PREFIX}.*.cancel_requested"

# Catalog queries (request-reply through nats.micro).
CATALOG_SERVICE: Final = "mochi-catalog"
CATALOG_PREFIX: Final = "mochi.catalog"
CATALOG_GET: Final = f"{CATALOG_PREFIX}.jobs.get"
CATALOG_LIST: Final = f"{CATALOG_PREFIX}.jobs.list"
CATALOG_QUEUE: Final = f"{CATALOG_PREFIX}.queue"

# Job ids are 32 lowercase hex digits: safe as one subject token.
JOB_ID_PATTERN: Final = re.compile(r"^[0-9a-f]{32}$")


def is_job_id(value: str) -> bool:
    return bool(JOB_ID_PATTERN.match(value))


def _checked(job_id: str) -> str:
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


def event_subject(job_id: str, event_type: str) -> str:
    if event_type in FINAL_TYPES:
        return f"{JOBS_PREFIX}.{_checked(job_id)}.final.{event_type}"
    return f"{JOBS_PREFIX}.{_checked(job_id)}.{event_type}"


def job_events(job_id: str) -> str:
    """Every event of one job (for replay and for its latest state)."""
    return f"{JOBS_PREFIX}.{_checked(job_id)}.>"


def job_final(job_id: str) -> str:
    return f"{JOBS_PREFIX}.{_checked(job_id)}.final.*"


def job_id_of(subject: str) -> str | None:
    parts = subject.split(".")
    if len(parts) >= 4 and f"{parts[0]}.{parts[1]}" == JOBS_PREFIX and is_job_id(parts[2]):
        return parts[2]
    return None

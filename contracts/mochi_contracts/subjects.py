"""Every NATS subject of the system. Services build subjects only through these.

Job events:   mochi.jobs.<job_id>.<type>        submitted, started, progress, phase, preview,
               cancel_requested and log (a runner's line about the job)
Final events: mochi.jobs.<job_id>.final.<type>  completed, failed, cancelled, expired
Webhook tries: mochi.jobs.<job_id>.webhook.<delivery seq>  every attempt of one delivery
Dispatcher:   mochi.dispatch.webhooks.<job_id>.<type>.<seq>  a webhook to deliver (one per job event)
              mochi.dispatch.deadlines.<job_id>              a queued job's deadline timer
Scheduler:    mochi.sched.released.<job_id>                  a job the fair-share scheduler let a runner take
                                                             (one per job, create-if-absent)
The extra `final` token lets one guard (expected last sequence 0 on
`mochi.jobs.<id>.final.*`) make the final event unique per job, for ever."""

from __future__ import annotations

import re
from typing import Final

from mochi_contracts.events import FINAL_TYPES, JOB_ID_REGEX

JOBS_PREFIX: Final = "mochi.jobs"
ALL_JOB_EVENTS: Final = f"{JOBS_PREFIX}.>"
ALL_SUBMITTED: Final = f"{JOBS_PREFIX}.*.submitted"

# What the webhook dispatcher reads from the job stream: the job events a
# webhook may hear of, and submissions (for deadlines).
DISPATCHER_SOURCES: Final = (f"{JOBS_PREFIX}.*.submitted", f"{JOBS_PREFIX}.*.started",
                             f"{JOBS_PREFIX}.*.progress", f"{JOBS_PREFIX}.*.final.*")
DISPATCH_PREFIX: Final = "mochi.dispatch"
ALL_DISPATCH: Final = f"{DISPATCH_PREFIX}.>"
ALL_WEBHOOK_DELIVERIES: Final = f"{DISPATCH_PREFIX}.webhooks.>"
ALL_DEADLINES: Final = f"{DISPATCH_PREFIX}.deadlines.*"

# Fair-share scheduling (MOCHI_SCHEDULING=fair): the scheduler's releases, which
# the runners pull instead of submissions.
SCHED_PREFIX: Final = "mochi.sched"
ALL_RELEASED: Final = f"{SCHED_PREFIX}.released.*"

# Catalog queries (request-reply through nats.micro).
CATALOG_SERVICE: Final = "mochi-catalog"
CATALOG_PREFIX: Final = "mochi.catalog"
CATALOG_GET: Final = f"{CATALOG_PREFIX}.jobs.get"
CATALOG_LIST: Final = f"{CATALOG_PREFIX}.jobs.list"

# Job ids are 32 lowercase hex digits: safe as one subject token. The same
# pattern as the events' JobId fields (one definition, in events.py).
JOB_ID_PATTERN: Final = re.compile(JOB_ID_REGEX)


def is_job_id(value: str) -> bool:
    # fullmatch: with match, `$` also matches before a trailing newline, and an
    # id with one went on into a NATS subject (an API 503 instead of a 404).
    return JOB_ID_PATTERN.fullmatch(value) is not None


def _checked(job_id: str) -> str:
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


def _under_job(job_id: str, *tokens: str) -> str:
    return ".".join((JOBS_PREFIX, _checked(job_id), *tokens))


def _job_token(subject: str, prefix: str) -> tuple[str, list[str]] | None:
    """(job id, the tokens after it) of a subject whose next token after
    `prefix` is a job id, or None."""
    if not subject.startswith(prefix + "."):
        return None
    job_id, *rest = subject[len(prefix) + 1:].split(".")
    return (job_id, rest) if is_job_id(job_id) else None


def event_subject(job_id: str, event_type: str) -> str:
    if event_type in FINAL_TYPES:
        return _under_job(job_id, "final", event_type)
    return _under_job(job_id, event_type)


def job_events(job_id: str) -> str:
    """Every event of one job (for replay and for its latest state)."""
    return _under_job(job_id, ">")


def job_final(job_id: str) -> str:
    return _under_job(job_id, "final", "*")


def job_logs(job_id: str) -> str:
    return _under_job(job_id, "log")


def job_id_of(subject: str) -> str | None:
    found = _job_token(subject, JOBS_PREFIX)
    return found[0] if found is not None and found[1] else None


# The event types that live directly under a job's token (the others are under
# `final.` or `webhook.`).
PLAIN_TYPES: Final = frozenset({"submitted", "started", "progress", "phase", "preview", "cancel_requested", "log"})


def parse_event_subject(subject: str) -> tuple[str, str] | None:
    """(job id, event type) that a job-stream subject stands for, or None for a
    subject that no event may have. The subject is what NATS permissions and the
    create-if-absent guard protect, so an event's type and job come from here."""
    found = _job_token(subject, JOBS_PREFIX)
    if found is None:
        return None
    job_id, rest = found
    if len(rest) == 1:
        return (job_id, rest[0]) if rest[0] in PLAIN_TYPES else None
    if len(rest) != 2:
        return None
    if rest[0] == "final" and rest[1] in FINAL_TYPES:
        return job_id, rest[1]
    # ASCII digits only: str.isdigit() also admits other scripts' digits.
    if rest[0] == "webhook" and rest[1].isascii() and rest[1].isdigit() and len(rest[1]) <= 20:
        return job_id, "webhook"
    return None


def webhook_attempts(job_id: str, delivery_seq: int) -> str:
    """Every recorded attempt of one webhook delivery (the delivery is named by
    the stream sequence of the job event it tells of)."""
    return _under_job(job_id, "webhook", str(int(delivery_seq)))


def webhook_delivery(job_id: str, event_type: str, seq: int) -> str:
    return f"{DISPATCH_PREFIX}.webhooks.{_checked(job_id)}.{event_type}.{int(seq)}"


def job_webhook_deliveries(job_id: str, event_type: str) -> str:
    return f"{DISPATCH_PREFIX}.webhooks.{_checked(job_id)}.{event_type}.*"


def deadline_timer(job_id: str) -> str:
    return f"{DISPATCH_PREFIX}.deadlines.{_checked(job_id)}"


def released(job_id: str) -> str:
    return f"{SCHED_PREFIX}.released.{_checked(job_id)}"


def released_job_id(subject: str) -> str | None:
    """The job a release subject names, or None for any other subject."""
    found = _job_token(subject, f"{SCHED_PREFIX}.released")
    return found[0] if found is not None and not found[1] else None

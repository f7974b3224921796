"""When a queued job should start, built on the running jobs' own finishes.

Each busy lane frees at its running job's estimated finish
(mochi_contracts.pace.estimated_finish, phases after the last step included);
the jobs ahead then take the earliest free lane in turn, each for the measured
run time of recent jobs (mochi_contracts.pace.mean_run_seconds), and the job
starts on the lane that frees next. An average of recent jobs alone said
"starts in 10 s" behind a job with 17 minutes left (issue 24)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from mochi_contracts import pace
from mochi_contracts.job_state import JobState


def lane_free_at(running: Iterable[JobState], after_steps_pace: float | None, mean_job_s: float | None,
                 now: datetime, work_s: Callable[[JobState], float | None] | None = None) -> list[datetime]:
    """When each running job's lane frees, never before now: its own finish
    estimate, or before its first step its start plus its work at the measured
    pace (`work_s`, e.g. mochi_contracts.job_cost.work_seconds), else plus the
    measured run time (now when nothing was measured)."""
    free = []
    for state in running:
        finish = pace.estimated_finish(state, after_steps_pace)
        if finish is None and state.started_at is not None:
            own = work_s(state) if work_s is not None else None
            run_s = own if own is not None else mean_job_s
            if run_s is not None:
                finish = state.started_at + timedelta(seconds=run_s)
        free.append(max(finish or now, now))
    return free


def estimated_start(position: int | None, busy_until: list[datetime], lanes: int, mean_job_s: float | None,
                    now: datetime) -> datetime | None:
    """The start of the job at `position` (1 = next) on `lanes` lanes, the busy
    ones free at `busy_until`, the others now. None without a position, or with
    jobs ahead and no measured run time."""
    if position is None or position < 1:
        return None
    ahead = position - 1
    if ahead and mean_job_s is None:
        return None
    free = sorted(busy_until)
    free += [now] * (max(lanes, 1) - len(free))  # a lane per running job at least
    heapq.heapify(free)
    for _ in range(ahead):
        assert mean_job_s is not None
        heapq.heappush(free, heapq.heappop(free) + timedelta(seconds=mean_job_s))
    return max(free[0], now)

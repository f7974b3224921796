"""When a queued job should start and a running one should finish.

Estimates from what the events already say: the pace of recent renders for
the queue, and this job's own seconds per step once it runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from mochi_contracts.job_state import JobState


def estimated_start(position: int | None, mean_job_s: float | None, running: int, now: datetime
                    ) -> datetime | None:
    if position is None or mean_job_s is None:
        return None
    runners = max(running, 1)
    # Jobs ahead are shared over the runners; a busy runner is half done on average.
    wait_s = ((position - 1) / runners + (0.5 if running else 0.0)) * mean_job_s
    return now + timedelta(seconds=wait_s)


def seconds_per_step(state: JobState) -> float | None:
    if state.status != "running" or state.started_at is None or state.step < 1:
        return None
    return (state.updated_at - state.started_at).total_seconds() / state.step


def estimated_finish(state: JobState) -> datetime | None:
    per_step = seconds_per_step(state)
    if per_step is None:
        return None
    return state.updated_at + timedelta(seconds=per_step * (state.total_steps - state.step))

"""A job's pace, from its step events alone: seconds per denoising step, when
a running job should finish, and how long ended renders took.

The one formula: the job resource shows it, the catalog's queue estimate
averages it, and the web app reads it from the resource. Only started_at,
last_step_at and step count, never updated_at: that also moves on log lines
and webhook records, which say nothing about the render."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from mochi_contracts.job_state import JobState


def seconds_per_step(state: JobState) -> float | None:
    """From the start to the newest step, over the steps done; None before the first step."""
    if state.started_at is None or state.last_step_at is None or state.step < 1:
        return None
    return max((state.last_step_at - state.started_at).total_seconds(), 0.0) / state.step


def estimated_finish(state: JobState) -> datetime | None:
    """The newest step's time plus the steps left at this pace; only while running."""
    per_step = seconds_per_step(state)
    if state.status != "running" or per_step is None or state.last_step_at is None:
        return None
    return state.last_step_at + timedelta(seconds=per_step * max(state.total_steps - state.step, 0))


def run_seconds(state: JobState) -> float | None:
    """Start to end of an ended job that ran; None for one that never started."""
    if state.started_at is None or state.finished_at is None:
        return None
    return max((state.finished_at - state.started_at).total_seconds(), 0.0)


def mean_run_seconds(states: Iterable[JobState]) -> float | None:
    """The mean of run_seconds over the jobs that ran (the queue estimate's pace)."""
    runs = [s for s in (run_seconds(state) for state in states) if s is not None]
    return sum(runs) / len(runs) if runs else None

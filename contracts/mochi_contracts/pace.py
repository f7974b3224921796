"""A job's pace, from its step events alone: seconds per denoising step, when
a running job should finish, and how long ended renders took.

After the last step come the decode, the video encode and the store, which
send no steps; their time is measured from this deployment's completed jobs
(last step to completion, per pixel-frame of the video, since the VAE decode
and the encode grow with it) and added to a running job's finish.

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


def pixel_frames(state: JobState) -> int:
    return max(state.request.width * state.request.height * state.request.num_frames, 1)


def after_steps_seconds(state: JobState) -> float | None:
    """From the last step to completion (decode, encode, store) of a completed
    job whose completing attempt rendered; None otherwise (a redelivery that
    found its video stored completes without a step of its own)."""
    if state.status != "completed" or state.finished_at is None or state.last_step_at is None:
        return None
    if state.attempt_starts and state.attempt_starts[-1].started_at > state.last_step_at:
        return None
    return max((state.finished_at - state.last_step_at).total_seconds(), 0.0)


def after_steps_pace(states: Iterable[JobState]) -> float | None:
    """Seconds after the last step per pixel-frame: the median over the
    completed jobs that measure it (one odd job moves a median little)."""
    paces = sorted(tail / pixel_frames(state) for state in states
                   if (tail := after_steps_seconds(state)) is not None)
    if not paces:
        return None
    mid = len(paces) // 2
    return paces[mid] if len(paces) % 2 else (paces[mid - 1] + paces[mid]) / 2


def estimated_finish(state: JobState, after_steps_per_pixel_frame: float | None = None) -> datetime | None:
    """The newest step's time plus the steps left at this pace, plus the phases
    after the last step at the measured pace (none without one); only while running."""
    per_step = seconds_per_step(state)
    if state.status != "running" or per_step is None or state.last_step_at is None:
        return None
    left_s = per_step * max(state.total_steps - state.step, 0)
    if after_steps_per_pixel_frame is not None:
        left_s += after_steps_per_pixel_frame * pixel_frames(state)
    return state.last_step_at + timedelta(seconds=left_s)


def run_seconds(state: JobState) -> float | None:
    """Start to end of an ended job that ran; None for one that never started."""
    if state.started_at is None or state.finished_at is None:
        return None
    return max((state.finished_at - state.started_at).total_seconds(), 0.0)


def mean_run_seconds(states: Iterable[JobState]) -> float | None:
    """The mean of run_seconds over the jobs that ran (the queue estimate's pace)."""
    runs = [s for s in (run_seconds(state) for state in states) if s is not None]
    return sum(runs) / len(runs) if runs else None

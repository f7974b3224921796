"""When a queued job should start and a running one finish, from states folded
out of real events (steps evenly spaced, so every way of reading the pace from
the step events agrees)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from mochi_api.estimates import estimated_finish, estimated_start, seconds_per_step
from mochi_contracts.events import JobProgress, JobStarted
from mochi_contracts.job_state import JobState, apply, new_state

from .events import JOB, STEPS, T0, completed, pure, submitted


def running(steps_done: int, per_step_s: float) -> JobState:
    state = new_state(submitted(), 1)
    state = apply(state, JobStarted(job_id=JOB, time=T0, runner="r1", attempt=1), 2)
    for step in range(1, steps_done + 1):
        state = apply(state, JobProgress(job_id=JOB, time=T0 + timedelta(seconds=step * per_step_s), step=step,
                                         total_steps=STEPS, runner="r1"), 2 + step)
    return state


def test_no_estimate_without_a_position_or_a_pace():
    assert estimated_start(None, 10.0, 1, T0) is None
    assert estimated_start(3, None, 1, T0) is None


def test_queue_estimate_shares_the_jobs_ahead_over_the_runners():
    assert estimated_start(1, 10.0, 0, T0) == T0  # first in line, nothing running: now
    assert estimated_start(1, 10.0, 1, T0) == T0 + timedelta(seconds=5)  # a busy runner is half done
    assert estimated_start(5, 10.0, 2, T0) == T0 + timedelta(seconds=(4 / 2 + 0.5) * 10)


@pure
@given(st.integers(1, 10_000), st.floats(0.1, 3600), st.integers(0, 64))
def test_a_later_place_in_line_never_starts_earlier(position, mean_s, runners):
    here = estimated_start(position, mean_s, runners, T0)
    behind = estimated_start(position + 1, mean_s, runners, T0)
    assert here is not None and behind is not None and T0 <= here <= behind


def test_no_pace_before_the_first_step_or_once_ended():
    assert seconds_per_step(new_state(submitted(), 1)) is None
    assert seconds_per_step(running(0, 2.0)) is None
    assert estimated_finish(running(0, 2.0)) is None
    ended = apply(running(3, 2.0), completed(20), 20)
    assert seconds_per_step(ended) is None and estimated_finish(ended) is None


@pure
@given(st.integers(1, STEPS), st.floats(0.01, 600))
def test_pace_and_finish_from_the_steps(done, per_step_s):
    state = running(done, per_step_s)
    pace = seconds_per_step(state)
    assert pace is not None and abs(pace - per_step_s) <= 1e-6 * per_step_s + 1e-6
    finish = estimated_finish(state)
    expected = T0 + timedelta(seconds=STEPS * per_step_s)
    assert finish is not None and abs((finish - expected).total_seconds()) <= 1e-3 + 1e-6 * STEPS * per_step_s

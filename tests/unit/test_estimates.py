"""When a queued job should start: on the running jobs' own finishes, then the
jobs ahead at the measured run time (a running job's finish is
tests/unit/test_pace.py and tests/unit/test_pace_after_steps.py)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from mochi_api.estimates import estimated_start, lane_free_at
from mochi_contracts.events import JobProgress, JobStarted
from mochi_contracts.job_state import apply, new_state

from .events import JOB, STEPS, T0, pure, submitted


def s(seconds: float):
    return T0 + timedelta(seconds=seconds)


def test_no_estimate_without_a_position_or_a_pace_for_the_jobs_ahead():
    assert estimated_start(None, [], 1, 10.0, T0) is None
    assert estimated_start(3, [], 1, None, T0) is None
    # First in line needs no pace: it starts when the first lane frees.
    assert estimated_start(1, [s(40)], 1, None, T0) == s(40)


def test_first_in_line_starts_when_the_running_job_finishes_not_after_an_average():
    # The case of issue 24: recent jobs took 10 s, the running one has 17 min left.
    assert estimated_start(1, [s(17 * 60)], 1, 10.0, T0) == s(17 * 60)
    assert estimated_start(1, [], 1, 10.0, T0) == T0  # an idle lane: now


def test_jobs_ahead_take_the_earliest_free_lane_in_turn():
    busy = [s(100), s(30)]
    assert estimated_start(1, busy, 2, 50.0, T0) == s(30)
    assert estimated_start(2, busy, 2, 50.0, T0) == s(80)  # behind one that starts at 30
    assert estimated_start(3, busy, 2, 50.0, T0) == s(100)
    assert estimated_start(4, busy, 2, 50.0, T0) == s(130)
    # A third lane, idle, takes the first job at once.
    assert estimated_start(1, busy, 3, 50.0, T0) == T0
    assert estimated_start(2, busy, 3, 50.0, T0) == s(30)


def test_a_lane_never_frees_in_the_past():
    assert estimated_start(1, [s(-60)], 1, 10.0, T0) == T0


def running(steps_done: int, per_step_s: float, job_id: str = JOB):
    state = new_state(submitted(job_id), 1)
    state = apply(state, JobStarted(job_id=job_id, time=T0, runner="r1", attempt=1), 2)
    for step in range(1, steps_done + 1):
        state = apply(state, JobProgress(job_id=job_id, time=s(step * per_step_s), step=step,
                                         total_steps=STEPS, runner="r1"), 2 + step)
    return state


def test_lanes_free_at_each_running_jobs_own_finish_with_the_phases_after_the_steps():
    now = s(4)
    # Two steps of 2 s done, six left: T0 + 16 s, plus 0.001 s per pixel-frame of 64x64x7.
    [free] = lane_free_at([running(2, 2.0)], 0.001, 10.0, now)
    assert free == s(16 + 0.001 * 64 * 64 * 7)
    [no_tail] = lane_free_at([running(2, 2.0)], None, 10.0, now)
    assert no_tail == s(16)
    # Before its first step: its start plus the measured run time; without one, now.
    assert lane_free_at([running(0, 2.0)], None, 10.0, now) == [s(10)]
    assert lane_free_at([running(0, 2.0)], None, None, now) == [now]
    # Overdue: now, never before.
    assert lane_free_at([running(2, 2.0)], None, 10.0, s(100)) == [s(100)]


@pure
@given(st.integers(1, 500), st.floats(0.1, 3600), st.lists(st.floats(-100, 10_000), max_size=8), st.integers(0, 8))
def test_a_later_place_in_line_never_starts_earlier(position, mean_s, busy_s, lanes):
    busy = [s(b) for b in busy_s]
    here = estimated_start(position, busy, lanes, mean_s, T0)
    behind = estimated_start(position + 1, busy, lanes, mean_s, T0)
    assert here is not None and behind is not None and T0 <= here <= behind
    # Never before the earliest lane frees (clamped to now).
    assert here >= min([max(b, T0) for b in busy] + ([T0] if lanes > len(busy) or not busy else []))


def test_before_its_first_step_a_lane_frees_after_the_jobs_own_work_when_known():
    now = s(4)
    assert lane_free_at([running(0, 2.0)], None, 10.0, now, lambda state: 30.0) == [s(30)]
    assert lane_free_at([running(0, 2.0)], None, 10.0, now, lambda state: None) == [s(10)]  # the mean, then
    # A job with steps has its own finish; its work is not asked.
    assert lane_free_at([running(2, 2.0)], None, 10.0, now, lambda state: 1e9) == [s(16)]

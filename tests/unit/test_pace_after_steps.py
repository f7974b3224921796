"""The phases after the last step (decode, encode, store) in a running job's
finish (mochi_contracts.pace), measured over completed jobs per pixel-frame."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from mochi_contracts import pace
from mochi_contracts.events import JobProgress, JobStarted
from mochi_contracts.job_state import JobState, apply, new_state

from .events import JOB, STEPS, T0, completed, pure, submitted

PIXEL_FRAMES = 64 * 64 * 7  # the size events.submitted asks for


def rendered(tail_s: float, job_id: str = JOB, steps: int = STEPS) -> JobState:
    """Started at T0, a step a second, completed `tail_s` after the last step."""
    state = new_state(submitted(job_id), 1)
    state = apply(state, JobStarted(job_id=job_id, time=T0, runner="r1", attempt=1), 2)
    for step in range(1, steps + 1):
        state = apply(state, JobProgress(job_id=job_id, time=T0 + timedelta(seconds=step), step=step,
                                         total_steps=STEPS, runner="r1"), 2 + step)
    done = completed(0, job_id)
    return apply(state, type(done)(job_id=job_id, time=T0 + timedelta(seconds=steps + tail_s), runner="r1",
                                   attempt=1, video=done.video), 100)


def test_the_time_after_the_last_step_of_a_completed_job():
    assert pace.after_steps_seconds(rendered(30.0)) == 30.0
    assert pace.after_steps_seconds(new_state(submitted(), 1)) is None  # never ran


def test_a_redelivery_that_found_its_video_stored_measures_nothing():
    # A second attempt starts after the last step and completes without a step.
    state = new_state(submitted(), 1)
    state = apply(state, JobStarted(job_id=JOB, time=T0, runner="r1", attempt=1), 2)
    state = apply(state, JobProgress(job_id=JOB, time=T0 + timedelta(seconds=1), step=1, total_steps=STEPS,
                                     runner="r1"), 3)
    state = apply(state, JobStarted(job_id=JOB, time=T0 + timedelta(seconds=600), runner="r2", attempt=2), 4)
    state = apply(state, completed(700), 5)
    assert state.status == "completed" and pace.after_steps_seconds(state) is None


def test_the_pace_is_the_median_per_pixel_frame():
    jobs = [rendered(t, f"{i:x}" * 32) for i, t in enumerate((10.0, 20.0, 600.0))]
    assert pace.after_steps_pace(jobs) == 20.0 / PIXEL_FRAMES
    assert pace.after_steps_pace(jobs[:2]) == 15.0 / PIXEL_FRAMES
    assert pace.after_steps_pace([]) is None


def test_a_running_job_past_its_last_step_still_has_the_decode_ahead():
    running = apply(new_state(submitted(), 1), JobStarted(job_id=JOB, time=T0, runner="r1", attempt=1), 2)
    for step in range(1, STEPS + 1):
        running = apply(running, JobProgress(job_id=JOB, time=T0 + timedelta(seconds=step), step=step,
                                             total_steps=STEPS, runner="r1"), 2 + step)
    assert running.status == "running" and running.step == STEPS
    last = T0 + timedelta(seconds=STEPS)
    assert pace.estimated_finish(running) == last  # the old estimate: "any moment"
    assert pace.estimated_finish(running, 30.0 / PIXEL_FRAMES) == last + timedelta(seconds=30)


@pure
@given(st.integers(1, STEPS), st.floats(0, 1e-2))
def test_the_phases_after_the_steps_only_ever_add(done, per_pixel_frame):
    state = apply(new_state(submitted(), 1), JobStarted(job_id=JOB, time=T0, runner="r1", attempt=1), 2)
    for step in range(1, done + 1):
        state = apply(state, JobProgress(job_id=JOB, time=T0 + timedelta(seconds=step), step=step,
                                         total_steps=STEPS, runner="r1"), 2 + step)
    plain, with_tail = pace.estimated_finish(state), pace.estimated_finish(state, per_pixel_frame)
    assert plain is not None and with_tail is not None
    assert abs((with_tail - plain).total_seconds() - per_pixel_frame * PIXEL_FRAMES) < 1e-3

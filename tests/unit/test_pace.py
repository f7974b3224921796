"""One pace (mochi_contracts.pace): seconds per step and the estimated finish
from the step events alone, folded out of real events; the job resource and
the catalog's queue estimate read it from there."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mochi_api.job_resource import to_resource
from mochi_catalog.projection import Projection, RawEvent
from mochi_contracts import pace, subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import JobEvent, JobLog, JobProgress, JobStarted, WebhookAttempt, event_type
from mochi_contracts.job_state import FINAL_STATUSES, JobState, apply, new_state

from .events import JOB, STEPS, T0, completed, pure, submitted


def running(steps_done: int, per_step_s: float, job_id: str = JOB) -> JobState:
    """Started at T0, then `steps_done` steps `per_step_s` apart."""
    state = new_state(submitted(job_id), 1)
    state = apply(state, JobStarted(job_id=job_id, time=T0, runner="r1", attempt=1), 2)
    for step in range(1, steps_done + 1):
        state = apply(state, JobProgress(job_id=job_id, time=T0 + timedelta(seconds=step * per_step_s), step=step,
                                         total_steps=STEPS, runner="r1"), 2 + step)
    return state


def test_no_pace_before_the_first_step():
    assert pace.seconds_per_step(new_state(submitted(), 1)) is None
    assert pace.seconds_per_step(running(0, 2.0)) is None
    assert pace.estimated_finish(running(0, 2.0)) is None


def test_an_ended_job_keeps_its_pace_but_has_no_finish_ahead():
    ended = apply(running(3, 2.0), completed(20), 20)
    assert ended.status == "completed"
    assert pace.estimated_finish(ended) is None
    # Start to the newest step over the steps done: the last step event was step 3 at T0+6 s.
    assert pace.seconds_per_step(ended) == 6.0 / STEPS


@pure
@given(st.integers(1, STEPS), st.floats(0.01, 600))
def test_pace_and_finish_from_the_steps(done, per_step_s):
    state = running(done, per_step_s)
    per_step = pace.seconds_per_step(state)
    assert per_step is not None and abs(per_step - per_step_s) <= 1e-6 * per_step_s + 1e-6
    finish = pace.estimated_finish(state)
    expected = T0 + timedelta(seconds=STEPS * per_step_s)
    assert finish is not None and abs((finish - expected).total_seconds()) <= 1e-3 + 1e-6 * STEPS * per_step_s


@pure
@given(st.integers(1, STEPS - 1), st.lists(st.floats(1, 3600), min_size=1, max_size=10))
def test_log_lines_and_webhook_records_after_the_last_step_move_nothing(done, gaps_s):
    """They move updated_at (the old formula's clock); the pace reads the steps only."""
    state = running(done, 2.0)
    before = (pace.seconds_per_step(state), pace.estimated_finish(state))
    seq, t = state.last_seq, state.last_step_at
    assert t is not None
    for i, gap in enumerate(gaps_s):
        seq, t = seq + 1, t + timedelta(seconds=gap)
        later: JobEvent = (JobLog(job_id=JOB, time=t, level="info", message="uploading", runner="r1") if i % 2
                           else WebhookAttempt(job_id=JOB, time=t, delivery_id=f"msg_{JOB}_{i}",
                                               event_type="progress", attempt=1, outcome="retrying",
                                               status_code=503))
        state = apply(state, later, seq)
    assert state.updated_at > state.last_step_at
    assert (pace.seconds_per_step(state), pace.estimated_finish(state)) == before


def test_uneven_steps_average_from_the_start():
    state = new_state(submitted(), 1)
    state = apply(state, JobStarted(job_id=JOB, time=T0, runner="r1", attempt=1), 2)
    for seq, (step, at_s) in enumerate([(1, 10.0), (2, 11.0), (3, 12.0)], start=3):
        state = apply(state, JobProgress(job_id=JOB, time=T0 + timedelta(seconds=at_s), step=step,
                                         total_steps=STEPS, runner="r1"), seq)
    assert pace.seconds_per_step(state) == 4.0
    assert pace.estimated_finish(state) == T0 + timedelta(seconds=12.0 + 4.0 * (STEPS - 3))


def test_a_new_attempt_has_no_pace_until_its_first_step():
    state = running(4, 1.0)
    state = apply(state, JobStarted(job_id=JOB, time=T0 + timedelta(seconds=30), runner="r2", attempt=2), 50)
    assert state.step == 0
    assert pace.seconds_per_step(state) is None and pace.estimated_finish(state) is None


def test_run_seconds_and_their_mean_count_only_jobs_that_ran():
    ran = apply(running(STEPS, 1.0), completed(40), 40)  # started at T0, ended at T0+40 s
    assert pace.run_seconds(ran) == 40.0
    assert pace.run_seconds(running(2, 1.0)) is None  # not ended
    never_started = apply(new_state(submitted(), 1), completed(30), 30)
    assert never_started.status == "completed" and pace.run_seconds(never_started) is None
    assert pace.mean_run_seconds([]) is None
    assert pace.mean_run_seconds([never_started]) is None
    other = apply(running(STEPS, 1.0, job_id="f" * 32), completed(20, "f" * 32), 40)
    assert pace.mean_run_seconds([ran, never_started, other]) == 30.0


def test_the_job_resource_shows_this_pace_and_whether_it_is_final():
    state = running(3, 2.5)
    job = to_resource(state, None, "")
    assert job.progress.seconds_per_step == 2.5 and job.metrics.seconds_per_step == 2.5
    assert job.estimated_finish_at == pace.estimated_finish(state) == T0 + timedelta(seconds=STEPS * 2.5)
    assert job.final is False
    ended = to_resource(apply(state, completed(40), 40), None, "")
    assert ended.final is True and ended.status in FINAL_STATUSES
    assert ended.progress.seconds_per_step is None and ended.estimated_finish_at is None
    assert ended.metrics.seconds_per_step == round(7.5 / STEPS, 4)


def test_the_catalogs_queue_pace_is_the_mean_run_seconds(tmp_path: Path):
    projection = Projection(tmp_path / "catalog.db")
    events: list[JobEvent] = []
    states = []
    for n, run_s in enumerate((12, 30)):
        job_id = f"{n:x}" * 32
        state = running(STEPS, 1.0, job_id)
        events += [submitted(job_id), JobStarted(job_id=job_id, time=T0, runner="r1", attempt=1),
                   completed(run_s, job_id)]
        states.append(apply(state, completed(run_s, job_id), 100))
    raws = []
    for seq, event in enumerate(events, start=1):
        data, headers = encode_event(event)
        raws.append(RawEvent(seq=seq, subject=subjects.event_subject(event.job_id, event_type(event)),
                             data=data, headers=headers))
    projection.apply_batch(raws)
    mean, running_now = projection.pace()
    assert mean == pace.mean_run_seconds(states) == 21.0 and running_now == 0

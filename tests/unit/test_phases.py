"""Progress.phase, folded out of events: queued before a runner starts the
job, then each phase the runner reports (a step says denoising, a preview
too), finished after the final event, whatever arrives late."""

from __future__ import annotations

from mochi_api.job_resource import job_phase, to_resource
from mochi_contracts.events import JobPhase, JobPreview, JobProgress
from mochi_contracts.job_state import apply, new_state
from mochi_contracts.phases import PHASES, RUNNER_PHASES

from .events import JOB, STEPS, at, completed, one_of_kinds, submitted


def test_the_phases_of_a_job_in_order():
    state = new_state(submitted(), 1)
    seen = [job_phase(state)]
    state = apply(state, one_of_kinds(2, "started"), 2)
    seen.append(job_phase(state))
    seq = 3
    for phase in RUNNER_PHASES[1:]:
        state = apply(state, JobPhase(job_id=JOB, time=at(seq), phase=phase, runner="r1"), seq)
        seen.append(job_phase(state))
        seq += 1
    state = apply(state, completed(seq), seq)
    seen.append(job_phase(state))
    assert seen == list(PHASES)  # queued, encoding_prompt (from started), ..., finished
    assert to_resource(state, None, "").progress.phase == "finished"
    # Nothing after the final event moves it.
    late = apply(state, JobPhase(job_id=JOB, time=at(seq + 1), phase="decoding", runner="r1"), seq + 1)
    assert job_phase(late) == "finished"


def test_a_step_or_a_preview_says_denoising_and_running():
    state = apply(new_state(submitted(), 1), one_of_kinds(2, "started"), 2)
    assert job_phase(state) == "encoding_prompt"
    stepped = apply(state, JobProgress(job_id=JOB, time=at(3), step=1, total_steps=STEPS, runner="r1"), 3)
    assert job_phase(stepped) == "denoising"
    # A preview as the newest event over a row that has not seen the job start (a lagging catalog).
    queued = new_state(submitted(), 1)
    shown = apply(queued, JobPreview(job_id=JOB, time=at(4), step=2, total_steps=STEPS, bytes=100, runner="r1"), 4)
    assert (shown.status, job_phase(shown)) == ("running", "denoising")

"""What a job would cost here before it is submitted (POST /v1/estimates):
this deployment's measured pace (mochi_contracts.pace) scaled by the job's
size and steps.

A denoising step's work grows with the transformer's tokens: 2x2 patches of
an 8x-downsampled, 6x-in-time latent. The step time of the completed jobs
nearest in tokens is scaled linearly to the new job's tokens, which is close
near sizes this deployment rendered and low far above them (attention is
quadratic): so a job far beyond anything completed here is said to be
(`beyond_experience`), not given a confident number. The phases after the
last step (decode, encode, store) come from pace.after_steps_pace."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mochi_contracts import pace
from mochi_contracts.job_state import JobState
from mochi_contracts.jobs import JobRequest

# A job costing more than this many times the costliest completed here is
# beyond this deployment's experience.
FAR_BEYOND = 4.0
# The completed jobs nearest in size whose step times are averaged.
NEAREST = 3


def latent_tokens(request: JobRequest) -> float:
    return (request.width / 16) * (request.height / 16) * ((request.num_frames - 1) / 6 + 1)


def cost(request: JobRequest) -> float:
    """The work of a render in token-steps."""
    return latent_tokens(request) * request.num_inference_steps


@dataclass(frozen=True)
class Measured:
    """A completed job's step time, as pace.seconds_per_step measured it."""

    request: JobRequest
    seconds_per_step: float


def measured(states: Sequence[JobState]) -> list[Measured]:
    out = []
    for state in states:
        per_step = pace.seconds_per_step(state)
        if state.status == "completed" and per_step is not None and per_step > 0:
            out.append(Measured(state.request, per_step))
    return out


def step_seconds(request: JobRequest, done: Sequence[Measured]) -> float | None:
    """Seconds per step for `request`: the NEAREST completed jobs in tokens,
    each scaled to its tokens, averaged; None with none."""
    if not done:
        return None
    tokens = latent_tokens(request)
    nearest = sorted(done, key=lambda m: abs(math.log(latent_tokens(m.request) / tokens)))[:NEAREST]
    return sum(m.seconds_per_step * tokens / latent_tokens(m.request) for m in nearest) / len(nearest)


def work_seconds(request: JobRequest, done: Sequence[Measured], after_steps_pace: float | None) -> float | None:
    """Start to finish of a render of `request` here: its steps, then the
    phases after them (none counted without a measure of them)."""
    per_step = step_seconds(request, done)
    if per_step is None:
        return None
    after = (after_steps_pace or 0.0) * request.width * request.height * request.num_frames
    return per_step * request.num_inference_steps + after


def times_largest(request: JobRequest, done: Sequence[Measured]) -> float | None:
    """How many times the costliest completed job `request` costs; None with none."""
    if not done:
        return None
    return cost(request) / max(cost(m.request) for m in done)


def beyond_experience(request: JobRequest, done: Sequence[Measured]) -> bool:
    """Far beyond anything completed here, or nothing completed at all."""
    ratio = times_largest(request, done)
    return ratio is None or ratio > FAR_BEYOND

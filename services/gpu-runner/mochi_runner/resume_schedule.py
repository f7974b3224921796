"""Resuming a render after its first `step` steps (issue 20): what a render
picks up from (`Resume`, a checkpoint's latents and step) and the scheduler
that skips the steps already done (`resumed_scheduler`). ResumedScheduler's
docstring says why the latents and the step are all the state needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import FlowMatchEulerDiscreteScheduler


@dataclass(frozen=True)
class Resume:
    """Where a render picks up: `latents` as they were after `step` steps of
    the same request (a checkpoint's). See ResumedScheduler for why these two
    are all the state the remaining steps need."""

    step: int
    latents: torch.Tensor


def _resumed_scheduler_class():
    from diffusers import FlowMatchEulerDiscreteScheduler

    class ResumedScheduler(FlowMatchEulerDiscreteScheduler):
        """Mochi's FlowMatchEulerDiscreteScheduler, for a render resumed after
        `resume_step` finished steps.

        What the scheduler's state is, and why the latents and the step suffice:
        MochiPipeline computes its sigmas from the step count alone
        (linear_quadratic_schedule(steps, 0.025)) and hands them to
        `set_timesteps`, which shifts them by the config's fixed `shift`,
        inverts them (invert_sigmas) and appends the terminal sigma: `sigmas`
        and `timesteps` are a pure function of (config, steps). The pipeline
        then calls `set_begin_index(0)`, so the first `step()` sets
        `_step_index = _begin_index` and each `step()` is
        `latents + (sigmas[i+1] - sigmas[i]) * noise_pred` followed by
        `_step_index += 1`: no other memory of earlier steps (Euler is
        single-step, `order` is 1, `stochastic_sampling` is off, so the seed's
        generator is used only for the initial noise in prepare_latents).
        Step i's noise prediction depends only on the latents, timesteps[i]
        and the prompt embeddings, which T5 recomputes identically. So, given
        the latents after k steps, the same schedule and `_step_index` = k, the
        remaining steps are the uninterrupted render's, bit for bit.

        The pipeline's own loop does the rest: it iterates `self.timesteps`
        (cut here to its last steps - k entries) and calls set_begin_index(0),
        moved here to k. Nothing of the loop is copied."""

        resume_step = 0
        timesteps: torch.Tensor  # set by set_timesteps, as in the base class

        # The parameters spelled out: the pipeline inspects them for `sigmas`.
        def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                          sigmas: list[float] | None = None, mu: float | None = None,
                          timesteps: list[float] | None = None) -> None:
            super().set_timesteps(num_inference_steps=num_inference_steps, device=device, sigmas=sigmas, mu=mu,
                                  timesteps=timesteps)
            self.timesteps = self.timesteps[self.resume_step:]

        def set_begin_index(self, begin_index: int = 0) -> None:
            super().set_begin_index(begin_index + self.resume_step)

    return ResumedScheduler


def resumed_scheduler(scheduler: FlowMatchEulerDiscreteScheduler, step: int) -> FlowMatchEulerDiscreteScheduler:
    """A fresh scheduler of `scheduler`'s config that skips the first `step` steps."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if type(scheduler) is not FlowMatchEulerDiscreteScheduler:
        raise ValueError(f"resuming needs Mochi's FlowMatchEulerDiscreteScheduler, not {type(scheduler).__name__}")
    if scheduler.config.stochastic_sampling or scheduler.config.use_dynamic_shifting:
        # Stochastic sampling draws noise every step from an unseeded
        # generator; dynamic shifting needs a `mu` MochiPipeline never passes.
        raise ValueError("resuming needs a deterministic schedule (no stochastic sampling or dynamic shifting)")
    resumed = _resumed_scheduler_class().from_config(scheduler.config)
    resumed.resume_step = step
    return resumed

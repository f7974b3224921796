"""What a job is doing now (Progress.phase): named once, in the order a job
goes through them. The runner reports the middle ones as `phase` events; the
first and the last follow from the job's status."""

from __future__ import annotations

from typing import Final, Literal, get_args

Phase = Literal["queued", "encoding_prompt", "denoising", "decoding", "encoding_video", "storing", "finished"]
PHASES: Final[tuple[Phase, ...]] = get_args(Phase)
QUEUED: Final[Phase] = "queued"
FINISHED: Final[Phase] = "finished"
# The phases a runner reports while it holds the job (JobPhase events).
RUNNER_PHASES: Final[tuple[Phase, ...]] = PHASES[1:-1]


def is_phase(value: str) -> bool:
    return value in PHASES

"""The job request: what a user may ask Mochi-1 for, with its bounds and defaults."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal, get_args
from urllib.parse import urlsplit

import msgspec

# Mochi-1 was trained at 848x480; the VAE downsamples 8x in space and the
# transformer patches 2x2, so a side must be a multiple of 16.
SIDE_MULTIPLE = 16
# The VAE compresses time 6x: a video of k latent frames decodes to 6(k-1)+1
# frames, so only 6k+1 frame counts map onto whole latent frames.
FRAME_STRIDE = 6
MAX_FRAMES = 163
MAX_SIDE = 1280
MAX_PROMPT_CHARS = 2000

Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PROMPT_CHARS,
                                     description="What the video should show.")]
NegativePrompt = Annotated[str, msgspec.Meta(max_length=MAX_PROMPT_CHARS,
                                             description="What the video should avoid.")]
Side = Annotated[int, msgspec.Meta(ge=64, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE)]
Frames = Annotated[int, msgspec.Meta(ge=1, le=MAX_FRAMES,
                                     description="6k+1 frames, 1 to 163.")]
Steps = Annotated[int, msgspec.Meta(ge=2, le=200,
                                    description="Denoising steps (diffusers divides by zero at 1).")]
Guidance = Annotated[float, msgspec.Meta(ge=0.0, le=20.0,
                                         description="Classifier-free guidance; <= 1 turns it off.")]
Seed = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Fps = Annotated[int, msgspec.Meta(ge=1, le=60)]

# A job's endings: the tags of events.FINAL_EVENTS, which events.py imports this
# module for and so holds to these at import (a new ending fails there).
Ending = Literal["completed", "failed", "cancelled", "expired"]
# What a job's webhook may be told about; progress is sent at most once a second.
WebhookEvent = Literal["started", "progress", Ending]
# Without a filter a webhook hears of the end only.
DEFAULT_WEBHOOK_EVENTS: Final[tuple[str, ...]] = get_args(Ending)
WebhookUrl = Annotated[str, msgspec.Meta(
    min_length=1, max_length=2048,
    description="http(s) URL told of this job's events (Standard Webhooks signing). "
                "Private, loopback and link-local addresses are refused unless the deployment allows them.")]
WebhookEvents = Annotated[list[WebhookEvent], msgspec.Meta(
    max_length=len(get_args(WebhookEvent)),
    description=f"Which events the webhook hears of; default: {', '.join(DEFAULT_WEBHOOK_EVENTS)}.")]
# Within one owner's queue, higher priorities start first (FIFO within one);
# between owners the scheduler's fair share decides. Which a key may use is in
# the API keys file (mochi_api.api_keys).
Priority = Literal["high", "normal", "low"]
PRIORITIES: Final[tuple[str, ...]] = ("high", "normal", "low")
Deadline = Annotated[datetime, msgspec.Meta(
    tz=True, description="A job not started by then ends `expired` without running "
                         "(the Cancel-After header sets it as a duration from now).")]


class JobRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One video to generate. Defaults are Mochi-1's reference settings."""

    prompt: Prompt
    negative_prompt: NegativePrompt = ""
    width: Side = 848
    height: Side = 480
    num_frames: Frames = MAX_FRAMES
    num_inference_steps: Steps = 64
    guidance_scale: Guidance = 4.5
    # None asks the API to draw one, so a redelivered job renders the same video.
    seed: Seed | None = None
    fps: Fps = 30
    webhook_url: WebhookUrl | None = None
    webhook_events: WebhookEvents | None = None
    deadline: Deadline | None = None
    priority: Annotated[Priority, msgspec.Meta(
        description="Order among this owner's own queued jobs (fair-share scheduling only); "
                    "an API key may be limited to some of them.")] = "normal"

    def webhook_wants(self, event_type: str) -> bool:
        return self.webhook_url is not None and event_type in (self.webhook_events or DEFAULT_WEBHOOK_EVENTS)


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


def semantic_errors(req: JobRequest) -> list[FieldError]:
    """The rules that msgspec's per-field bounds cannot state."""
    errors = []
    if (req.num_frames - 1) % FRAME_STRIDE:
        lower = req.num_frames - (req.num_frames - 1) % FRAME_STRIDE
        errors.append(FieldError(
            "num_frames",
            f"must be 6k+1 (1, 7, 13, ..., {MAX_FRAMES}); nearest below is {lower}"))
    if not req.prompt.strip():
        errors.append(FieldError("prompt", "must contain more than whitespace"))
    if req.webhook_url is not None:
        try:
            url = urlsplit(req.webhook_url)
            ok = url.scheme in ("http", "https") and bool(url.hostname)
            url.port  # noqa: B018 - raises on a bad port
        except ValueError:
            ok = False
        if not ok:
            errors.append(FieldError("webhook_url", "must be an absolute http:// or https:// URL"))
    if req.webhook_events is not None and req.webhook_url is None:
        errors.append(FieldError("webhook_events", "needs a webhook_url"))
    return errors

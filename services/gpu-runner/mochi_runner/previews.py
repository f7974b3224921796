"""Live previews of a render in progress (issue 24): a small moving picture of
what the model currently expects the clean video to be, at most every
`preview_every_s` seconds.

Where the picture comes from. diffusers' MochiPipeline steps a
FlowMatchEulerDiscreteScheduler: the latents lie on the straight path between
the noise and the clean video x0, parametrised by the scheduler's sigma s, the
transformer's output is the velocity v = dx/ds, and a step is the Euler step
x_next = x + (s_next - s) * v. The model's estimate of the clean video from its
prediction at a step is therefore x0 = x + (s_end - s) * v, with s_end the
schedule's last sigma, the clean end (1 with genmo's `invert_sigmas`
configuration, where s rises from noise at 0; 0 with the default one the tiny
model has). In the noise-level convention t = |s_end - s| that is the usual
x0 = x_t - t * v' with v' = noise - x0. The step-end callback hands over only the
latents after the step, so v comes from two consecutive steps' latents:
v = (x_k - x_(k-1)) / (s_k - s_(k-1)), exact for the Euler step the scheduler
took (tests/unit/test_preview_projection.py checks it against the scheduler).
Only the preview's few latent frames are kept from one step to the next.

Colour. A linear 12 -> 3 projection plus a bias, then a 2x upsample (the
latents are 1/8 of the output, so a quarter of its resolution). The factors
are ComfyUI's for Mochi (comfyanonymous/ComfyUI, comfy/latent_formats.py,
class Mochi: latent_rgb_factors and latent_rgb_factors_bias), fitted to the
space its sampler works in, (latent - latents_mean) / latents_std, which is
diffusers' pipeline space too (MochiPipeline's decode multiplies by the VAE's
latents_std / scaling_factor, 1.0, and adds latents_mean). So the pipeline's
latents are projected as they are, not un-normalised first; the result is
RGB in [-1, 1].

Cost. On the GPU only the preview's latent frames are touched (a slice every
step, an einsum and an upsample when a preview is due): bench/preview_cost.py
measures it against a step. The copy to the host, the WebP and PNG encode and
the upload run in a thread and on the event loop, one preview in flight per
job; a preview that falls due while one is in flight is skipped."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import numpy as np
import structlog
import torch
import torch.nn.functional as F
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore

from mochi_common.jetstream_setup import ensure_preview_bucket
from mochi_contracts.streams import PREVIEW_BUCKET, JetStreamSettings, preview_object

log = structlog.get_logger()

# ComfyUI's Mochi latent-to-RGB factors (see the module docstring): one row per
# latent channel, columns R, G, B.
RGB_FACTORS: Final = (
    (-0.0069, -0.0045, 0.0018),
    (0.0154, -0.0692, -0.0274),
    (0.0333, 0.0019, 0.0206),
    (-0.1390, 0.0628, 0.1678),
    (-0.0725, 0.0134, -0.1898),
    (0.0074, -0.0270, -0.0209),
    (-0.0176, -0.0277, -0.0221),
    (0.5294, 0.5204, 0.3852),
    (-0.0326, -0.0446, -0.0143),
    (-0.0659, 0.0153, -0.0153),
    (0.0185, -0.0217, 0.0014),
    (-0.0396, -0.0495, -0.0281),
)
RGB_BIAS: Final = (-0.0940, -0.1418, -0.1453)
PREVIEW_FRAMES: Final = 4  # latent frames across the clip
UPSCALE: Final = 2  # latents are 1/8 of the output: 2x is a quarter
FRAME_MS: Final = 250  # each preview frame's time in the loop
# diffusers' MochiPipeline builds its sigmas with linear_quadratic_schedule(steps,
# threshold_noise=0.025), the value of genmo's reference code; the same call here.
THRESHOLD_NOISE: Final = 0.025


def frame_indices(latent_frames: int, count: int = PREVIEW_FRAMES) -> list[int]:
    """`count` latent frames spread over the clip, first and last included."""
    if latent_frames < 1:
        raise ValueError(f"a clip has at least one latent frame, not {latent_frames}")
    return sorted({round(i * (latent_frames - 1) / max(count - 1, 1)) for i in range(count)})


def schedule(scheduler_config: Any, steps: int) -> list[float]:
    """The scheduler's sigmas for a `steps`-step Mochi render: [k] is where the
    latents are after k steps, [-1] the clean end. Built by a fresh scheduler of
    the pipeline's configuration with the pipeline's own schedule, so it is the
    render's whatever the configuration (inverted or not)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(sigmas=np.array(linear_quadratic_schedule(steps, THRESHOLD_NOISE)), device="cpu")
    sigmas = [float(s) for s in scheduler.sigmas]
    if len(sigmas) != steps + 1:
        raise RuntimeError(f"the scheduler made {len(sigmas)} sigmas for {steps} steps")
    return sigmas


def clean_estimate(now: torch.Tensor, before: torch.Tensor, sigmas: Sequence[float], step: int) -> torch.Tensor:
    """x0 that the model's prediction at `step` (1-based) implies, from the latents
    after it (`now`) and after the step before (`before`)."""
    s_now, s_before, s_end = sigmas[step], sigmas[step - 1], sigmas[-1]
    velocity = (now - before) / (s_now - s_before)
    return now + (s_end - s_now) * velocity


def _factors(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(RGB_FACTORS, dtype=torch.float32, device=device),
            torch.tensor(RGB_BIAS, dtype=torch.float32, device=device))


def project(x0: torch.Tensor, factors: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Latent frames (1, 12, F, H, W) to uint8 RGB (F, H*UPSCALE, W*UPSCALE, 3),
    on the latents' device."""
    weight, bias = factors if factors is not None else _factors(x0.device)
    rgb = torch.einsum("cfhw,cr->frhw", x0[0].float(), weight) + bias.view(1, 3, 1, 1)
    rgb = F.interpolate(rgb, scale_factor=UPSCALE, mode="bilinear", align_corners=False)
    return ((rgb.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def encode_webp(frames: np.ndarray) -> bytes:
    """F x H x W x 3 uint8 frames to a looping animated WebP."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    out = io.BytesIO()
    images[0].save(out, "WEBP", save_all=True, append_images=images[1:], duration=FRAME_MS, loop=0,
                   quality=75, method=4)
    return out.getvalue()


def encode_png(frame: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame).save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()


class PreviewStore:
    """The previews bucket, as far as a runner cares. Previews are for show: the
    bucket away is a warning, never a job's failure (jobs render without
    previews, and it is looked up again at the next one)."""

    def __init__(self, js: JetStreamContext, cfg: JetStreamSettings, timeout_s: float = 10.0):
        self.js = js
        self.cfg = cfg
        self.timeout_s = timeout_s
        self._bucket: ObjectStore | None = None

    async def _get_bucket(self, operation: str) -> ObjectStore | None:
        if self._bucket is None:
            try:
                self._bucket = await asyncio.wait_for(ensure_preview_bucket(self.js, self.cfg, self.timeout_s),
                                                      2 * self.timeout_s)
            except Exception as err:
                self._away(operation, err)
        return self._bucket

    def _away(self, operation: str, err: BaseException) -> None:
        self._bucket = None
        log.warning("preview.store_unavailable", operation=operation, bucket=PREVIEW_BUCKET, error=repr(err),
                    effect="jobs render without live previews")

    async def put(self, job_id: str, webp: bytes, png: bytes) -> bool:
        bucket = await self._get_bucket("put")
        if bucket is None:
            return False
        try:
            # The still first: a client told of the WebP finds a still at least as new.
            await asyncio.wait_for(bucket.put(preview_object(job_id, still=True), png), self.timeout_s)
            await asyncio.wait_for(bucket.put(preview_object(job_id), webp), self.timeout_s)
            return True
        except Exception as err:
            self._away("put", err)
            return False

    async def delete(self, job_id: str) -> None:
        bucket = await self._get_bucket("delete")
        if bucket is None:
            return
        for name in (preview_object(job_id), preview_object(job_id, still=True)):
            try:
                await asyncio.wait_for(bucket.delete(name), self.timeout_s)
            except ObjectNotFoundError:
                pass  # this job made no preview (or the max age took it)
            except Exception as err:
                self._away("delete", err)
                return


class JobPreviews:
    """One attempt's previews. `on_latents` runs in the render thread after
    every step; everything after the few GPU kernels runs elsewhere."""

    def __init__(self, store: PreviewStore, loop: asyncio.AbstractEventLoop, *, job_id: str,
                 latent_frames: int, sigmas: Sequence[float], every_s: float,
                 published: Callable[[int, int], Awaitable[None]]):
        self.store = store
        self.loop = loop
        self.job_id = job_id
        self.total = len(sigmas) - 1
        self.sigmas = list(sigmas)
        self.every_s = every_s
        self.published = published  # (step, bytes) once a preview is stored
        self.indices = frame_indices(latent_frames)
        self.log = log.bind(job_id=job_id)
        self._before: tuple[int, torch.Tensor] | None = None  # the preview frames after the last step
        # The first preview as soon as two steps give a velocity, then at most
        # one every `every_s`: a render whose denoising takes less than the
        # interval (a draft on the embedded stack takes about a second) still
        # shows one. It is the model's clean estimate, blurry early, not noise.
        self._last = time.monotonic() - every_s
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._factors: tuple[torch.Tensor, torch.Tensor] | None = None
        self._index: torch.Tensor | None = None
        self.made = 0

    def on_latents(self, step: int, latents: torch.Tensor) -> None:
        """After `step`: keep its preview frames; past the interval, with no
        preview in flight, start one."""
        if self._closed:
            return
        if self._index is None or self._index.device != latents.device:
            self._index = torch.tensor(self.indices, device=latents.device)
        now = latents.index_select(2, self._index).float()
        before, self._before = self._before, (step, now)
        if before is None or before[0] != step - 1:
            return  # the first step of this attempt: no velocity yet
        if time.monotonic() - self._last < self.every_s or not self._idle.is_set():
            return
        self._idle.clear()
        self._last = time.monotonic()
        try:
            if self._factors is None:
                self._factors = _factors(latents.device)
            rgb = project(clean_estimate(now, before[1], self.sigmas, step), self._factors)
            ready = None
            if rgb.is_cuda:
                ready = torch.cuda.Event()
                ready.record(torch.cuda.current_stream(rgb.device))
        except Exception:
            self._idle.set()
            raise
        threading.Thread(target=self._encode, args=(step, rgb, ready), name=f"preview-{self.job_id[:8]}",
                         daemon=True).start()

    def _encode(self, step: int, rgb: torch.Tensor, ready: Any) -> None:  # a thread of its own
        try:
            if ready is not None:
                # On a stream of this thread's own, so the copy never queues
                # behind (or in front of) the denoising kernels.
                side = torch.cuda.Stream(rgb.device)
                with torch.cuda.stream(side):
                    side.wait_event(ready)
                    frames = rgb.to("cpu", non_blocking=False).numpy()
                side.synchronize()
            else:
                frames = rgb.numpy()
            del rgb
            webp, png = encode_webp(frames), encode_png(frames[len(frames) // 2])
        except Exception as err:
            self.log.warning("preview.encode_failed", step=step, error=repr(err))
            self._idle.set()
            return
        self.loop.call_soon_threadsafe(self._upload_soon, step, webp, png)

    def _upload_soon(self, step: int, webp: bytes, png: bytes) -> None:  # the event loop
        task = self.loop.create_task(self._upload(step, webp, png))
        task.add_done_callback(lambda _: self._idle.set())

    async def _upload(self, step: int, webp: bytes, png: bytes) -> None:
        try:
            if self._closed or not await self.store.put(self.job_id, webp, png):
                return
            self.made += 1
            if not self._closed:  # settle gave up waiting: the final event may be out
                await self.published(step, len(webp))
        except Exception as err:  # a preview is for show: the render goes on
            self.log.warning("preview.not_published", step=step, error=repr(err))

    async def settle(self, timeout_s: float) -> None:
        """No new preview from now on; the one in flight (if any) done."""
        self._closed = True
        if not await asyncio.to_thread(self._idle.wait, timeout_s):
            self.log.warning("preview.still_in_flight", waited_s=timeout_s)

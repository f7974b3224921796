"""Mochi-1 through diffusers: load once from a local directory, render many.

The same `from_pretrained` path loads genmo/mochi-1-preview's bf16 weights on
a GPU node and the tiny random model here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog
import torch

from mochi_contracts.jobs import JobRequest
from mochi_runner.video_encode import to_uint8

log = structlog.get_logger()

# Called after each denoising step with (steps done, total steps). Raising
# from it stops the render at once: diffusers' interrupt flag would still
# decode the half-done latents, which wastes the GPU on a cancelled job.
StepHook = Callable[[int, int], None]


@dataclass(frozen=True)
class EngineConfig:
    model_dir: Path
    device: str = "auto"
    dtype: str = "auto"
    vae_tiling: bool = True


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # bf16 is what Mochi-1 ships; CPU kernels are far faster in fp32.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


class MochiEngine:
    """One resident MochiPipeline on one device."""

    def __init__(self, config: EngineConfig):
        from diffusers import MochiPipeline

        if not (config.model_dir / "model_index.json").exists():
            raise FileNotFoundError(
                f"no diffusers model at {config.model_dir} (model_index.json missing); "
                "download genmo/mochi-1-preview there or build the tiny model")
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        started = time.perf_counter()
        self.pipe = MochiPipeline.from_pretrained(str(config.model_dir), torch_dtype=self.dtype)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        if config.vae_tiling:
            self.pipe.vae.enable_tiling()
        log.info("engine.loaded", model_dir=str(config.model_dir), device=str(self.device),
                 dtype=str(self.dtype), seconds=round(time.perf_counter() - started, 2))

    def warm_up(self) -> None:
        started = time.perf_counter()
        self.render(JobRequest(prompt="warm up", width=64, height=64, num_frames=7,
                               num_inference_steps=2, seed=0), lambda step, total: None)
        log.info("engine.warm", seconds=round(time.perf_counter() - started, 2))

    def render(self, req: JobRequest, on_step: StepHook) -> np.ndarray:
        """Render one video; T x H x W x 3 uint8 frames."""
        steps = req.num_inference_steps

        def step_end(pipe, index, timestep, tensors):  # diffusers' callback signature
            on_step(index + 1, steps)
            return {}

        # The generator lives on the CPU so one seed gives one video on any device.
        generator = torch.Generator(device="cpu").manual_seed(req.seed or 0)
        with torch.inference_mode():
            out = self.pipe(
                prompt=req.prompt, negative_prompt=req.negative_prompt or None,
                width=req.width, height=req.height, num_frames=req.num_frames,
                num_inference_steps=steps, guidance_scale=req.guidance_scale,
                generator=generator, output_type="np", callback_on_step_end=step_end)
        return to_uint8(out.frames[0])

"""MochiEngine's own decode (unscale, VAE, uint8 on the device) gives the same
frames as diffusers' MochiPipeline output followed by video_encode.to_uint8."""

from __future__ import annotations

import numpy as np
import torch

from mochi_contracts.jobs import JobRequest
from mochi_runner.engine import EngineConfig, MochiEngine
from mochi_runner.tiny_model import save_tiny_model
from mochi_runner.video_encode import to_uint8


def test_render_equals_the_pipelines_own_output(tmp_path):
    engine = MochiEngine(EngineConfig(model_dir=save_tiny_model(tmp_path / "tiny"), device="cpu"))
    req = JobRequest(prompt="waves crash on rocks", width=96, height=64, num_frames=7,
                     num_inference_steps=3, guidance_scale=4.5, seed=9)
    try:
        frames = engine.render(req, lambda step, total: None)
        with torch.inference_mode():
            out = engine.pipe(prompt=req.prompt, width=req.width, height=req.height, num_frames=req.num_frames,
                              num_inference_steps=req.num_inference_steps, guidance_scale=req.guidance_scale,
                              generator=torch.Generator().manual_seed(req.seed), output_type="np")
        reference = to_uint8(out.frames[0])
        assert frames.shape == reference.shape == (7, 64, 96, 3)
        assert np.array_equal(frames, reference)
    finally:
        engine.close()

"""MochiEngine's own decode (unscale, VAE, uint8 on the device) gives the same
frames as diffusers' MochiPipeline output followed by video_encode.to_uint8."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines import ONE_DEVICE, STOCK, cpu_engine, cpu_engines
from mochi_contracts.jobs import JobRequest
from mochi_runner.video_encode import to_uint8


@pytest.mark.parametrize("prefix_attention", [True, False], ids=["one-device-prefix", "stock"])
def test_render_equals_the_pipelines_own_output(tiny_model, prefix_attention):
    req = JobRequest(prompt="waves crash on rocks", width=96, height=64, num_frames=7,
                     num_inference_steps=3, guidance_scale=4.5, seed=9)
    with cpu_engine(tiny_model, prefix_attention=prefix_attention) as engine:
        frames = engine.render(req, lambda step, total: None)
        with torch.inference_mode():
            out = engine.pipe(prompt=req.prompt, width=req.width, height=req.height, num_frames=req.num_frames,
                              num_inference_steps=req.num_inference_steps, guidance_scale=req.guidance_scale,
                              generator=torch.Generator().manual_seed(req.seed), output_type="np")
        reference = to_uint8(out.frames[0])
        assert frames.shape == reference.shape == (7, 64, 96, 3)
        assert np.array_equal(frames, reference)
        assert (engine.parallel is not None) == prefix_attention


def test_one_device_frames_equal_stock_diffusers_up_to_rounding(tiny_model):
    """The one-device path's decoded frames against diffusers' stock pipeline
    (its own processor, one batch-2 forward per step), fp32: at most one
    level of 255 apart where a value sits on a rounding edge."""
    req = JobRequest(prompt="waves crash on rocks", width=96, height=64, num_frames=7,
                     num_inference_steps=3, guidance_scale=4.5, seed=9)
    with cpu_engines(tiny_model, ONE_DEVICE, STOCK) as (one, stock):
        ours, reference = one.denoise(req, lambda s, t: None), stock.denoise(req, lambda s, t: None)
        assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-5), (ours - reference).abs().max()
        frames, stock_frames = one.decode(ours), stock.decode(reference)
        assert np.abs(frames.astype(np.int16) - stock_frames.astype(np.int16)).max() <= 1

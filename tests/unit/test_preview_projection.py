"""The live preview's projection (mochi_runner.previews): the clean-video
estimate from two steps' latents against diffusers' own scheduler step, the
frames it picks, and the RGB it makes (shape, dtype, range, encodings)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from mochi_runner import previews


@pytest.mark.parametrize("inverted", [True, False])  # genmo's configuration, and the tiny model's
def test_the_clean_estimate_is_the_one_the_step_implies(inverted):
    steps = 12
    config = FlowMatchEulerDiscreteScheduler(invert_sigmas=inverted).config
    sigmas = previews.schedule(config, steps)
    assert len(sigmas) == steps + 1
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule

    scheduler.set_timesteps(sigmas=np.array(linear_quadratic_schedule(steps, previews.THRESHOLD_NOISE)))
    g = torch.Generator().manual_seed(3)
    x0, x = torch.randn(1, 12, 4, 6, 8, generator=g), torch.randn(1, 12, 4, 6, 8, generator=g)
    for k, t in enumerate(scheduler.timesteps, 1):
        # A model whose every prediction points at x0, plus noise of its own:
        # its estimate at each step is what the step it took implies.
        target = x0 + 0.1 * torch.randn(x0.shape, generator=g)
        velocity = (target - x) / (sigmas[-1] - sigmas[k - 1])
        before = x
        x = scheduler.step(velocity, t, x, return_dict=False)[0]
        assert torch.allclose(previews.clean_estimate(x, before, sigmas, k), target, atol=1e-3), k


@pytest.mark.parametrize(("frames", "want"), [(1, [0]), (2, [0, 1]), (3, [0, 1, 2]), (5, [0, 1, 3, 4]),
                                              (28, [0, 9, 18, 27])])
def test_frames_spread_over_the_clip(frames, want):
    assert previews.frame_indices(frames) == want
    with pytest.raises(ValueError):
        previews.frame_indices(0)


def test_the_projection_is_a_quarter_of_the_output_in_uint8_rgb():
    latents = torch.randn(1, 12, 4, 60, 106, generator=torch.Generator().manual_seed(0)) * 3
    rgb = previews.project(latents)
    assert rgb.shape == (4, 120, 212, 3) and rgb.dtype == torch.uint8  # 848x480 / 4
    assert rgb.min() == 0 and rgb.max() == 255  # large latents saturate at both ends
    # Zero latents are the bias alone: ComfyUI's factors map into [-1, 1].
    grey = previews.project(torch.zeros(1, 12, 1, 2, 2))
    want = [round((b + 1) * 127.5) for b in previews.RGB_BIAS]
    assert grey.reshape(-1, 3).tolist() == [want] * 16
    # Channel 7 carries most of the luminance in these factors: more of it is brighter.
    bright = torch.zeros(1, 12, 1, 2, 2)
    bright[0, 7] = 1.0
    assert (previews.project(bright).int() > grey.int()).all()


def test_the_encodings_are_a_looping_webp_and_a_png():
    frames = previews.project(torch.randn(1, 12, 4, 8, 12)).numpy()
    webp = Image.open(io.BytesIO(previews.encode_webp(frames)))
    assert webp.format == "WEBP" and webp.n_frames == 4 and webp.size == (24, 16)
    assert webp.info.get("loop") == 0
    png = Image.open(io.BytesIO(previews.encode_png(frames[2])))
    assert png.format == "PNG" and png.size == (24, 16)
    assert np.array_equal(np.asarray(png.convert("RGB")), frames[2])

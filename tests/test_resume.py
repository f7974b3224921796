"""A job interrupted is a job continued (issue 20).

The engine: a render stopped after step k and resumed from the latents of
step k equals the uninterrupted render bit for bit (tiny model, CPU), on the
one-device stock pipeline, the guidance-parallel path and a lane."""

from __future__ import annotations

import pytest
import torch

from mochi_contracts.jobs import JobRequest
from mochi_runner.engine import EngineConfig, MochiEngine, Resume
from mochi_runner.tiny_model import save_tiny_model

GUIDED = JobRequest(prompt="a cat walks on the grass", negative_prompt="", width=64, height=64, num_frames=13,
                    num_inference_steps=6, guidance_scale=4.5, seed=11)
FREE = JobRequest(prompt="a bird over a forest", width=64, height=48, num_frames=7, num_inference_steps=5,
                  guidance_scale=1.0, seed=4)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-mochi"))


@pytest.fixture(scope="module", params=["stock", "guidance-parallel"])
def engine(request, tiny_dir):
    config = (EngineConfig(model_dir=tiny_dir, device="cpu") if request.param == "stock"
              else EngineConfig(model_dir=tiny_dir, devices=("cpu", "cpu")))
    engine = MochiEngine(config)
    yield engine
    engine.close()


def _interrupted_at(engine: MochiEngine, req: JobRequest, k: int, lane: int | None = None) -> torch.Tensor:
    """The latents a checkpoint keeps: a render stopped (by raising, as a
    cancel or shutdown does) right after step k."""
    kept: dict[int, torch.Tensor] = {}

    def stop(step: int, total: int) -> None:
        if step == k:
            raise Interrupted

    with pytest.raises(Interrupted):
        engine.denoise(req, stop, lane=lane, on_latents=lambda step, latents: kept.__setitem__(step, latents.clone()))
    assert sorted(kept) == list(range(1, k + 1))
    return kept[k]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_interrupted_and_resumed_equals_uninterrupted(engine, k):
    uninterrupted = engine.denoise(GUIDED, lambda s, t: None)
    saved = _interrupted_at(engine, GUIDED, k)
    steps: list[int] = []
    resumed = engine.denoise(GUIDED, lambda step, total: steps.append(step), resume=Resume(step=k, latents=saved))
    assert steps == list(range(k + 1, GUIDED.num_inference_steps + 1))  # numbered as uninterrupted
    assert torch.equal(resumed, uninterrupted)
    assert (engine.decode(resumed) == engine.decode(uninterrupted)).all()


def test_resumed_after_the_last_step_renders_no_step(engine):
    final = engine.denoise(GUIDED, lambda s, t: None)
    steps: list[int] = []
    again = engine.denoise(GUIDED, lambda step, total: steps.append(step),
                           resume=Resume(step=GUIDED.num_inference_steps, latents=final.clone()))
    assert steps == [] and torch.equal(again, final)
    with pytest.raises(ValueError):
        engine.denoise(GUIDED, lambda s, t: None, resume=Resume(step=GUIDED.num_inference_steps + 1, latents=final))


def test_the_stock_scheduler_is_back_after_a_resume(engine):
    stock = engine.pipe.scheduler
    saved = _interrupted_at(engine, GUIDED, 2)
    engine.denoise(GUIDED, lambda s, t: None, resume=Resume(step=2, latents=saved))
    assert engine.pipe.scheduler is stock
    assert type(stock).__name__ == "FlowMatchEulerDiscreteScheduler"


def test_a_lane_resumes_exactly_too(tiny_dir):
    engine = MochiEngine(EngineConfig(model_dir=tiny_dir, devices=("cpu", "cpu")))
    try:
        uninterrupted = engine.denoise(FREE, lambda s, t: None, lane=1)
        saved = _interrupted_at(engine, FREE, 2, lane=1)
        resumed = engine.denoise(FREE, lambda s, t: None, lane=1, resume=Resume(step=2, latents=saved))
        assert torch.equal(resumed, uninterrupted)
        assert engine.render_config(1)["path"] == "lane" and engine.render_config(None)["path"] != "lane"
    finally:
        engine.close()


def test_model_digest_tells_models_apart(tiny_dir, tmp_path):
    one = MochiEngine(EngineConfig(model_dir=tiny_dir, device="cpu"))
    save_tiny_model(tmp_path / "other", seed=1)  # the same config, other weights
    other = MochiEngine(EngineConfig(model_dir=tmp_path / "other", device="cpu"))
    same = MochiEngine(EngineConfig(model_dir=tiny_dir, devices=("cpu", "cpu")))
    try:
        assert one.model_digest() == same.model_digest() != other.model_digest()
        assert one.latent_shape(GUIDED) == (1, 12, 3, 8, 8)
    finally:
        for e in (one, other, same):
            e.close()

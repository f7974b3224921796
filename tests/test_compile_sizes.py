"""A compiled runner's warm-up leaves no compile for the first job of a new
size (issue 22): it renders its warm-up size and denoises one more width, so
dynamo's automatic dynamic shapes compile the blocks once with the sequence
length dynamic, and every later size reuses that graph.

The compile backend is dynamo's "eager" one here: the graphs dynamo makes and
when it makes them do not depend on the backend, and inductor on two CPU
cores would take minutes. bench/startup.py measures the real thing on a GPU."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch._dynamo.utils as dynamo_utils

from mochi_contracts.jobs import JobRequest
from mochi_runner.engine import EngineConfig, MochiEngine


@pytest.fixture
def eager_compile(monkeypatch):
    compile_module = torch.nn.Module.compile

    def compile_eager(self, *args, **kwargs):
        return compile_module(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", compile_eager)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _graphs() -> int:
    return dynamo_utils.counters["stats"]["unique_graphs"]


def _denoise(engine: MochiEngine, width: int, height: int, frames: int, guidance: float = 4.5) -> None:
    engine.denoise(JobRequest(prompt="a fox runs through snow", width=width, height=height, num_frames=frames,
                              num_inference_steps=2, guidance_scale=guidance, seed=3), lambda step, total: None)


def test_after_warm_up_no_size_compiles_again(tiny_model, eager_compile):
    engine = MochiEngine(EngineConfig(model_dir=tiny_model, device="cpu", compile_blocks=True,
                                      warmup_size=(64, 64, 7)))
    try:
        before = _graphs()
        engine.warm_up()
        warmed = _graphs()
        # Static graphs for the warm-up size, then the dynamic ones.
        assert warmed - before > 2, warmed - before
        for width, height, frames in [(128, 64, 13), (64, 128, 7), (96, 96, 19), (64, 64, 7)]:
            _denoise(engine, width, height, frames)
            _denoise(engine, width, height, frames, guidance=1.0)
        assert _graphs() == warmed, "a job size compiled again after the warm-up"
    finally:
        engine.close()


def test_without_the_second_width_a_new_size_compiles(tiny_model, eager_compile):
    """The control: a warm-up at one size alone leaves the first new size to compile."""
    engine = MochiEngine(EngineConfig(model_dir=tiny_model, device="cpu", compile_blocks=True,
                                      warmup_size=(64, 64, 7)))
    try:
        engine.render(JobRequest(prompt="warm up", width=64, height=64, num_frames=7, num_inference_steps=2,
                                 seed=0), lambda step, total: None)
        one_size = _graphs()
        _denoise(engine, 128, 64, 13)
        assert _graphs() > one_size
    finally:
        engine.close()

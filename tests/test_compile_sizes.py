"""A compiled runner's warm-up leaves no compile for the first job of a new
size (issue 22): the blocks' visual token count is marked dynamic from their
first compile (prefix_attention.mark_sequence_dynamic), so the warm-up's
graphs serve every later size.

The compile backend is dynamo's "eager" one here: the graphs dynamo makes and
when it makes them do not depend on the backend, and inductor on two CPU
cores would take minutes. bench/startup.py measures the real thing on a GPU."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch._dynamo.utils as dynamo_utils

from engines import cpu_engine
from mochi_contracts.jobs import JobRequest
from mochi_runner.engine import MochiEngine


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
    with cpu_engine(tiny_model, compile_blocks=True, warmup_size=(64, 64, 7)) as engine:
        before = _graphs()
        engine.warm_up()
        warmed = _graphs()
        # Two block kinds (47 blocks, and the last one without the prompt's
        # output) times two prompt lengths: the empty negative prompt's one
        # token, a size dynamo always specialises, and any other length (the
        # carrier's length is dynamic too).
        assert warmed - before == 4, warmed - before
        for width, height, frames in [(128, 64, 13), (64, 128, 7), (96, 96, 19), (64, 64, 7)]:
            _denoise(engine, width, height, frames)
            _denoise(engine, width, height, frames, guidance=1.0)
        assert _graphs() == warmed, "a job size compiled again after the warm-up"


def test_without_the_marks_a_new_size_compiles(tiny_model, eager_compile, monkeypatch):
    """The control: with the token count left static, the first new size compiles again."""
    from mochi_runner.parallel import prefix_attention

    monkeypatch.setattr(prefix_attention, "mark_sequence_dynamic", lambda *args: None)
    with cpu_engine(tiny_model, compile_blocks=True, warmup_size=(64, 64, 7)) as engine:
        engine.warm_up()
        one_size = _graphs()
        _denoise(engine, 128, 64, 13)
        assert _graphs() > one_size

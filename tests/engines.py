"""MochiEngines on the CPU as the engine tests build them (usually on the
session's tiny model, conftest's `tiny_model`), closed when the test is done,
and the render a checkpoint keeps when a step hook stops it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from mochi_contracts.jobs import JobRequest
from mochi_runner.engine import EngineConfig, MochiEngine

# The engine's three ways to render, as EngineConfig fields on top of the CPU.
STOCK: dict[str, Any] = {"prefix_attention": False}  # diffusers' own MochiPipeline
ONE_DEVICE: dict[str, Any] = {}  # the runner's default: the sync-free path on one device
GUIDANCE_PARALLEL: dict[str, Any] = {"devices": ("cpu", "cpu")}


def cpu_config(model_dir: Path, **config: Any) -> EngineConfig:
    return EngineConfig(model_dir=model_dir, **{"device": "cpu", **config})


@contextmanager
def cpu_engine(model_dir: Path, **config: Any) -> Iterator[MochiEngine]:
    engine = MochiEngine(cpu_config(model_dir, **config))
    try:
        yield engine
    finally:
        engine.close()


@contextmanager
def cpu_engines(model_dir: Path, *configs: dict[str, Any]) -> Iterator[list[MochiEngine]]:
    """One engine per config, all closed at the end."""
    with ExitStack() as stack:
        yield [stack.enter_context(cpu_engine(model_dir, **config)) for config in configs]


class Interrupted(Exception):
    """Raised from a step hook, as a cancel or a shutdown stops a render."""


def interrupted_at(engine: MochiEngine, req: JobRequest, k: int, lane: int | None = None) -> torch.Tensor:
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

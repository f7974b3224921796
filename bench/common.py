"""Shared pieces of the benchmark scripts: the prompt, timing, memory, the
measured matmul ceiling, and a report that prints and also writes JSON."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

# 40 words from the tiny word-level tokenizer's vocabulary: 40 tokens and </s>,
# the prompt length the measurements used. The random-weight model
# turns any prompt into noise; only its length matters for the FLOPs.
PROMPT = ("a cat walks on the grass in the morning sun a red car drives along a road by the sea "
          "at night waves crash on rocks under a grey sky a person dances in a city street")

DEFAULT = dict(width=848, height=480, num_frames=163, num_inference_steps=64, guidance_scale=4.5)


def bench_parser(tiny_help: str = "CPU dry run with the tiny model") -> argparse.ArgumentParser:
    """The options every model benchmark takes: where its report goes, the
    tiny model's CPU dry run, and the video's size (Mochi's reference by default)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument("--tiny", action="store_true", help=tiny_help)
    parser.add_argument("--width", type=int, default=DEFAULT["width"])
    parser.add_argument("--height", type=int, default=DEFAULT["height"])
    parser.add_argument("--frames", type=int, default=DEFAULT["num_frames"])
    return parser


class StopSteps(Exception):
    """Raised from a step hook once a benchmark has timed the steps it wanted."""


def wall_seconds(fn, device: torch.device, reps: int) -> list[float]:
    """Wall clock of `fn` followed by a sync, `reps` times: a step's pattern."""
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def sync(devices) -> None:
    for d in devices:
        if d.type == "cuda":
            torch.cuda.synchronize(d)


def reset_peaks(devices) -> None:
    for d in devices:
        if d.type == "cuda":
            torch.cuda.reset_peak_memory_stats(d)


def peaks_gib(devices) -> dict[str, float]:
    return {str(d): round(torch.cuda.max_memory_allocated(d) / 2**30, 1)
            for d in devices if d.type == "cuda"}


def matmul_peak_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """bf16 n x n x n products on random data (zeros run faster), mean of `reps` after 3 warm-ups."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
    return 2 * n**3 / cuda_seconds(lambda: a @ b, device, reps) / 1e12


def cuda_seconds(fn, device: torch.device, reps: int = 10) -> float:
    """Seconds per call of `fn` on `device`, timed by CUDA events: the mean of `reps` after 3 warm-ups."""
    with torch.cuda.device(device):
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


class Report:
    """Every figure printed as it is measured and kept for the JSON file."""

    def __init__(self, out_dir: Path, name: str):
        self.out_dir = out_dir
        self.name = name
        self.figures: dict[str, Any] = {}
        self.started = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, key: str, value: Any, note: str = "") -> None:
        self.figures[key] = value
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"[{time.perf_counter() - self.started:7.1f}s] {key} = {shown}" + (f"  ({note})" if note else ""),
              flush=True)
        self.save()

    def save(self) -> None:
        (self.out_dir / f"{self.name}.json").write_text(json.dumps(self.figures, indent=1, default=str))

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


RANDOM_WEIGHTS = "RANDOM full-size weights: real FLOPs, noise pictures"


def open_report(out_dir: Path, name: str, tiny: bool) -> Report:
    """A report whose first figures say which weights ran, on which versions."""
    report = Report(out_dir, name)
    report.add("weights", "tiny random model (CPU dry run)" if tiny else RANDOM_WEIGHTS)
    report.add("versions", versions())
    return report


def bench_model_dir(tiny: bool) -> Path:
    """The tiny random model, saved afresh, for a CPU dry run; otherwise a
    placeholder, since the engine builds full-size random weights itself."""
    if not tiny:
        return Path("unused")
    from mochi_runner.tiny_model import save_tiny_model

    return save_tiny_model(Path(tempfile.mkdtemp()) / "tiny")


def versions() -> dict[str, str]:
    import diffusers
    import transformers

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__}
    if torch.cuda.is_available():
        info["cuda"] = str(torch.version.cuda)
        info["cudnn"] = str(torch.backends.cudnn.version())
        info["gpus"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return info

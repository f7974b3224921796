"""Loading Mochi-1 for the engine: which device and dtype, the model
directory checked before any weights load (model_check.py), the pipeline read
with diffusers' `from_pretrained`, and each component's dtype and device
logged as loaded."""

from __future__ import annotations

from pathlib import Path

import structlog
import torch

log = structlog.get_logger()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # bf16 is what Mochi-1 ships; CPU kernels are far faster in fp32.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def load_pipeline(model_dir: Path, device: torch.device, dtype: torch.dtype, *, random_weights: bool = False):
    """The MochiPipeline on `device`: model_dir checked (model_check), then loaded
    with the bf16 variant where there is one; each component logged."""
    if random_weights:
        from mochi_runner.random_full_model import BENCHMARK_ONLY_LABEL, build_random_pipeline

        log.warning("engine.random_weights", label=BENCHMARK_ONLY_LABEL)
        pipe = build_random_pipeline(device, dtype)
        _log_components(pipe, None)
        return pipe
    from diffusers import MochiPipeline

    from mochi_runner.model_check import loadable_model

    # Headers and configs only, before any weights load: a missing or cut-short
    # shard ends the start here with one line naming the file (ModelDirError).
    report = loadable_model(model_dir)
    # bf16 where a component has it, its plain files where not (genmo's T5):
    # diffusers falls back per component, but refuses a variant no component has.
    pipe = MochiPipeline.from_pretrained(str(model_dir), torch_dtype=dtype,
                                         variant=report.variant).to(device)
    _log_components(pipe, report)
    return pipe


def _log_components(pipe, report) -> None:  # report: model_check.ModelReport, None for random weights
    """Each model component's dtype and device as loaded, and what it was read from."""
    stored = {c.name: c for c in report.components} if report is not None else {}
    for name, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        param = next(module.parameters())
        read = stored.get(name)
        log.info("engine.component", component=name, cls=type(module).__name__, dtype=str(param.dtype),
                 device=str(param.device), stored_dtype=read.dtype if read else None,
                 stored_variant=read.variant if read else None, files=len(read.files) if read else 0,
                 bytes=read.bytes if read else 0, random_weights_benchmark_only=report is None)

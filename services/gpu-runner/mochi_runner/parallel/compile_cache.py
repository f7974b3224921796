"""Where torch.compile keeps what it compiled, so a restart reuses it.

Inductor's FX-graph and autotuning caches and Triton's kernel cache live under
one directory on the node's disk (the runner's hostPath volume in
deploy/kustomize): a runner restarted on the same node loads its compiled
blocks from there instead of compiling them again. What comes back is what the
same code, versions and shapes compiled before (the caches key on all of
them), so the numbers are the ones a fresh compile gives."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger()


def use_compile_cache(directory: str) -> Path | None:
    """Point inductor and Triton at `directory` ("" leaves torch's defaults, a
    per-user folder under /tmp). Call before the first compile: inductor reads
    these variables when it first needs its cache."""
    if not directory:
        return None
    root = Path(directory).resolve()
    (root / "triton").mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root)
    os.environ["TRITON_CACHE_DIR"] = str(root / "triton")
    # On by default in recent torch; said here so a restart never depends on it.
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    log.info("engine.compile_cache", dir=str(root),
             entries=sum(1 for _ in root.rglob("*") if _.is_file()))
    return root

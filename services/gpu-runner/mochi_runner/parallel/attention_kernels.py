"""The attention kernel behind the prefix processor (prefix_attention.py).

"sdpa": PyTorch's scaled_dot_product_attention, which picks cuDNN on Hopper
(571 TFLOP/s at Mochi's shape on an H200, docs/benchmarks.md). Bitwise the
stock diffusers processor.

"fa4": FlashAttention-4 (`flash-attn-4`, CuTe DSL) for Hopper and Blackwell:
676 TFLOP/s at the same shape on the same H200. Exact attention too (no
approximation; it rounds differently from cuDNN, by as much as cuDNN differs
from PyTorch's own flash kernel). It is an optional dependency (the `fa4`
extra) and must be asked for; it fails at start-up, not at the first job, when
it cannot run.

FA4 is wrapped in a torch custom op so `torch.compile` keeps each transformer
block one graph: traced directly, its autograd Function and CuTe DSL launch
would split every block at the attention call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

AttentionKernel = Literal["sdpa", "fa4"]
# q, k, v and the output all (batch, tokens, heads, head_dim): FlashAttention's layout.
TokensMajorAttention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sdpa_tokens_major(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA in FlashAttention's layout; lets the CPU tests run the FA4 code path's plumbing."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


@torch.library.custom_op("mochi::fa4_attention", mutates_args=())
def fa4_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from flash_attn.cute import flash_attn_func

    out = flash_attn_func(q, k, v)
    return out[0] if isinstance(out, tuple) else out


@fa4_attention.register_fake
def _fa4_attention_shape(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(q)


def tokens_major_kernel(kernel: AttentionKernel) -> TokensMajorAttention | None:
    """None for "sdpa" (the processor's own, stock-equal path)."""
    if kernel == "sdpa":
        return None
    if kernel == "fa4":
        return fa4_attention
    raise ValueError(f"unknown attention kernel {kernel!r}; use 'sdpa' or 'fa4'")


def check_kernel(kernel: AttentionKernel, devices: Sequence[torch.device]) -> None:
    """Fail at start-up with a clear reason when `kernel` cannot run on `devices`."""
    if kernel != "fa4":
        return
    try:
        import flash_attn.cute  # noqa: F401
    except ImportError as err:
        raise RuntimeError("attention_kernel=fa4 needs FlashAttention-4: pip install 'mochi-serve[fa4]' "
                           f"(flash-attn-4 with the CUDA 13 CuTe DSL libraries); import failed: {err}") from err
    for device in devices:
        if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] not in (9, 10):
            raise RuntimeError(f"attention_kernel=fa4 runs on Hopper or Blackwell GPUs, not on {device}")

"""Mochi's joint attention at the default video's shape, forward only, bf16:
cuDNN SDPA (what PyTorch picks on Hopper, and what the runner uses), PyTorch's
flash kernel, and FlashAttention-4 (CuTe DSL) where it is installed.

One batch-1 attention: 24 heads of 128, 44,520 visual + 40 text tokens. 70% of
a Mochi step's FLOPs are 48 of these.

    python bench/attention_kernels.py             # the attention call alone
    python bench/attention_kernels.py --forward   # also a whole compiled batch-1 transformer
                                                  # forward per kernel (RANDOM full-size weights)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from common import cuda_seconds
from flops import branch_inputs

HEADS, DIM = 24, 128
TOKENS = 44_520 + 40


def forward_per_kernel(device: torch.device) -> None:
    """One compiled batch-1 forward of full-size Mochi (RANDOM weights) at the
    default video's size, per kernel: what one GPU does in a guidance-parallel step."""
    from mochi_runner.engine import compile_blocks
    from mochi_runner.parallel.prefix_attention import length_carrier, prefix_forward, use_prefix_attention
    from mochi_runner.random_full_model import random_transformer

    # 40 tokens and </s>
    hidden, text, timestep, mask = branch_inputs(848, 480, 163, 41, device, torch.bfloat16)
    transformer = random_transformer(device)
    outputs = {}
    for kernel in ("sdpa", "fa4"):
        use_prefix_attention(transformer, kernel)
        torch._dynamo.reset()
        compile_blocks(transformer)
        carrier = length_carrier(mask)
        times = []
        with torch.inference_mode():
            for _ in range(4):
                torch.cuda.synchronize(device)
                started = time.perf_counter()
                out = prefix_forward(transformer, hidden, text, timestep, mask, carrier)
                torch.cuda.synchronize(device)
                times.append(time.perf_counter() - started)
        outputs[kernel] = out
        print(f"forward {kernel:5s} compiled: {statistics.median(times[1:]):.3f} s (median of 3; first, with "
              f"compilation, {times[0]:.1f} s), peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB",
              flush=True)
    diff = (outputs["fa4"].float() - outputs["sdpa"].float())
    print(f"noise prediction fa4 vs sdpa: max abs {diff.abs().max().item():.3e}, rel L2 "
          f"{(diff.norm() / outputs['sdpa'].float().norm()).item():.3e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--forward", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda:0")
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, TOKENS, DIM, device=device, dtype=torch.bfloat16, generator=gen)
               for _ in range(3))
    flops = 4 * TOKENS * TOKENS * DIM * HEADS
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, shape (1, {HEADS}, {TOKENS}, {DIM})",
          flush=True)
    results = {}
    with torch.inference_mode():
        for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("torch_flash", SDPBackend.FLASH_ATTENTION)):
            with sdpa_kernel(backend):
                seconds = cuda_seconds(functools.partial(F.scaled_dot_product_attention, q, k, v), device)
                results[name] = F.scaled_dot_product_attention(q, k, v)
            print(f"{name:12s} {seconds * 1e3:8.2f} ms  {flops / seconds / 1e12:6.1f} TFLOP/s", flush=True)
        try:
            from flash_attn.cute import flash_attn_func
        except ImportError as err:
            print(f"fa4          not installed ({err})")
            return
        qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # FA's (batch, tokens, heads, dim)

        def fa4():
            out = flash_attn_func(qt, kt, vt)
            return out[0] if isinstance(out, tuple) else out

        started = time.perf_counter()
        fa4()
        torch.cuda.synchronize(device)
        print(f"fa4 first call (JIT compile) {time.perf_counter() - started:.1f} s", flush=True)
        seconds = cuda_seconds(fa4, device)
        print(f"{'fa4':12s} {seconds * 1e3:8.2f} ms  {flops / seconds / 1e12:6.1f} TFLOP/s", flush=True)
        out = fa4().transpose(1, 2)
        ref = results["cudnn"]
        diff = (out.float() - ref.float())
        print(f"fa4 vs cudnn: max abs {diff.abs().max().item():.3e}, rel L2 "
              f"{(diff.norm() / ref.float().norm()).item():.3e}; cudnn vs torch_flash max abs "
              f"{(results['torch_flash'].float() - ref.float()).abs().max().item():.3e}", flush=True)
        print(f"fa4 bitwise equal to itself on a second call: {torch.equal(out, fa4().transpose(1, 2))}")
    del q, k, v, results
    if args.forward:
        forward_per_kernel(device)


if __name__ == "__main__":
    main()

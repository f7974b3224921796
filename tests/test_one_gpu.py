"""One device on the multi-device code path (issue 22), tiny model, fp32, CPU.

A one-device engine runs its transformer behind the guidance-parallel wrapper
with one replica: the sync-free processor, the two guidance branches one
after the other on the one copy of the weights. Its latents equal diffusers'
stock pipeline's up to fp32 rounding (batch-1 against batch-2 products), it
resumes bit for bit, and the compile cache it is pointed at survives a
restart."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mochi_contracts.jobs import JobRequest
from engines import ONE_DEVICE, STOCK, cpu_config, cpu_engines, interrupted_at
from mochi_runner.engine import MochiEngine
from mochi_runner.resume_schedule import Resume
from mochi_runner.parallel.prefix_attention import PrefixMochiAttnProcessor

GUIDED = JobRequest(prompt="a cat walks on the grass", negative_prompt="", width=160, height=96, num_frames=13,
                    num_inference_steps=4, guidance_scale=4.5, seed=7)
FREE = JobRequest(prompt="a bird over a forest", width=96, height=64, num_frames=7, num_inference_steps=3,
                  guidance_scale=1.0, seed=4)


@pytest.fixture(scope="module")
def engines(tiny_model):
    with cpu_engines(tiny_model, ONE_DEVICE, STOCK) as (one, stock):
        yield one, stock


def test_one_device_runs_the_wrapper_over_its_only_transformer(engines):
    one, stock = engines
    assert one.parallel is not None and len(one.parallel.replicas) == 1
    assert one.pipe.transformer is one.parallel
    assert one.devices == [torch.device("cpu")]
    replica = one.parallel.replicas[0]
    assert all(isinstance(b.attn1.processor, PrefixMochiAttnProcessor) for b in replica.transformer_blocks)
    # No second copy of the weights: the wrapper owns no parameters, its one
    # replica is the transformer the pipeline loaded.
    assert list(one.parallel.parameters()) == []
    assert one.parallel.replicas == [replica] and one.parallel.workers[0].device == torch.device("cpu")
    assert one.render_config(None)["path"] == "guidance-parallel x1"
    assert one.render_config(None)["prefix_attention"] == "True"
    assert stock.parallel is None and stock.render_config(None)["path"] == "stock"
    assert not any(isinstance(b.attn1.processor, PrefixMochiAttnProcessor)
                   for b in stock.pipe.transformer.transformer_blocks)


@pytest.mark.parametrize("req", [GUIDED, FREE], ids=["guided", "guidance-free"])
def test_one_device_latents_equal_the_stock_pipeline(engines, req):
    one, stock = engines
    steps: list[int] = []
    ours = one.denoise(req, lambda step, total: steps.append(step))
    reference = stock.denoise(req, lambda step, total: None)
    diff = (ours - reference).abs().max().item()
    print(f"\none device vs stock, {req.guidance_scale=}: max |diff| = {diff:.3e}")
    assert steps == list(range(1, req.num_inference_steps + 1))
    assert ours.shape == reference.shape and ours.dtype == reference.dtype == torch.float32
    # fp32: the two branches as batch-1 products round differently from one batch 2.
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-5)
    if req.guidance_scale <= 1.0:
        # Guidance-free is one batch-1 forward in both: the same numbers.
        assert torch.equal(ours, reference)


@pytest.mark.parametrize("k", [1, 3])
def test_one_device_resumes_bit_for_bit(engines, k):
    one, _ = engines
    uninterrupted = one.denoise(GUIDED, lambda s, t: None)
    saved = interrupted_at(one, GUIDED, k)
    steps: list[int] = []
    resumed = one.denoise(GUIDED, lambda step, total: steps.append(step), resume=Resume(step=k, latents=saved))
    assert steps == list(range(k + 1, GUIDED.num_inference_steps + 1))
    assert torch.equal(resumed, uninterrupted)


def test_fa4_on_one_device_fails_at_start_up_where_it_cannot_run(tiny_model):
    with pytest.raises(RuntimeError, match="FlashAttention-4|Hopper"):
        MochiEngine(cpu_config(tiny_model, **ONE_DEVICE, attention_kernel="fa4"))
    with pytest.raises(ValueError, match="prefix"):
        MochiEngine(cpu_config(tiny_model, **STOCK, attention_kernel="fa4"))


_COMPILE = textwrap.dedent("""
    import sys, torch
    from torch._dynamo.utils import counters
    from mochi_runner.parallel.compile_cache import use_compile_cache
    use_compile_cache(sys.argv[1])
    f = torch.compile(lambda x: torch.sin(x) * 2 + 1)
    y = f(torch.arange(16, dtype=torch.float32))
    assert torch.allclose(y, torch.sin(torch.arange(16.0)) * 2 + 1)
    print(counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"])
""")


def test_compile_cache_dir_is_reused_by_a_restarted_process(tmp_path):
    """Two processes, one after the other, as a runner and its restart on the
    same node: the first compiles into the directory, the second loads it."""
    cache = tmp_path / "compile-cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR_", "TRITON_"))}

    def run() -> tuple[int, int]:
        done = subprocess.run([sys.executable, "-c", _COMPILE, str(cache)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        hit, miss = done.stdout.split()[-2:]
        return int(hit), int(miss)

    assert run() == (0, 1)
    assert any(p.is_file() for p in (cache / "fxgraph").rglob("*"))
    assert run() == (1, 0)

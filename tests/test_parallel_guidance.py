"""Guidance-parallel denoising equals the single-process pipeline (tiny model, CPU).

The two "devices" are both the CPU here; the code path is the GPU one: one
replica per device, one worker thread per device, the noise predictions
copied back to the first device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines import GUIDANCE_PARALLEL, ONE_DEVICE, STOCK, cpu_config, cpu_engine, cpu_engines, interrupted_at
from mochi_contracts.jobs import JobRequest
from mochi_runner.engine import MochiEngine
from mochi_runner.parallel.guidance_parallel import GuidanceParallelTransformer
from mochi_runner.parallel.prefix_attention import length_carrier, prefix_forward, use_prefix_attention
from mochi_runner.parallel.replicate import replicate
from mochi_runner.tiny_model import build_tiny_pipeline

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def transformer():
    return build_tiny_pipeline().transformer.eval().requires_grad_(False)


def _inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 12, 3, 8, 10, generator=gen)
    text = torch.randn(2, 256, 32, generator=gen)
    mask = torch.zeros(2, 256, dtype=torch.long)
    mask[0, :1] = 1  # an empty negative prompt: only </s>
    mask[1, :9] = 1
    timestep = torch.tensor([640.0, 640.0])
    return hidden, text, timestep, mask


def test_prefix_processor_is_bitwise_the_stock_processor(transformer):
    hidden, text, timestep, mask = _inputs()
    fast = replicate(transformer, CPU)
    use_prefix_attention(fast)
    with torch.inference_mode():
        for i in range(2):
            sl = slice(i, i + 1)
            stock = transformer(hidden[sl], text[sl], timestep[sl], mask[sl], return_dict=False)[0]
            ours = prefix_forward(fast, hidden[sl], text[sl], timestep[sl], mask[sl], length_carrier(mask[sl]))
            assert torch.equal(stock, ours)


def test_each_branch_is_bitwise_that_branch_alone(transformer):
    hidden, text, timestep, mask = _inputs()
    parallel = GuidanceParallelTransformer([replicate(transformer, CPU), replicate(transformer, CPU)])
    try:
        with torch.inference_mode():
            both = parallel(hidden_states=hidden, encoder_hidden_states=text, timestep=timestep,
                            encoder_attention_mask=mask, return_dict=False)[0]
            for i in range(2):
                sl = slice(i, i + 1)
                alone = transformer(hidden[sl], text[sl], timestep[sl], mask[sl], return_dict=False)[0]
                assert torch.equal(both[sl], alone), f"branch {i}"
            # A batch of 1 (no guidance) runs on the first replica alone.
            one = parallel(hidden_states=hidden[1:], encoder_hidden_states=text[1:], timestep=timestep[1:],
                           encoder_attention_mask=mask[1:], return_dict=False)[0]
            assert torch.equal(one, both[1:])
    finally:
        parallel.close()


def test_one_replica_runs_both_branches_each_bitwise_that_branch_alone(transformer):
    """A one-GPU runner's wrapper: both branches on its only replica, one
    after the other (a length carrier holds one prompt length, and the pair's
    lengths differ), each the batch-1 forward of that branch."""
    hidden, text, timestep, mask = _inputs()
    single = GuidanceParallelTransformer([replicate(transformer, CPU)])
    try:
        with torch.inference_mode():
            both = single(hidden_states=hidden, encoder_hidden_states=text, timestep=timestep,
                          encoder_attention_mask=mask, return_dict=False)[0]
            assert both.shape == hidden.shape
            for i in range(2):
                sl = slice(i, i + 1)
                alone = transformer(hidden[sl], text[sl], timestep[sl], mask[sl], return_dict=False)[0]
                assert torch.equal(both[sl], alone), f"branch {i}"
    finally:
        single.close()


def test_parallel_pipeline_matches_single_process_pipeline(tiny_model):
    req = JobRequest(prompt="a cat walks on the grass", negative_prompt="", width=160, height=96,
                     num_frames=13, num_inference_steps=4, guidance_scale=4.5, seed=7)
    with cpu_engines(tiny_model, STOCK, GUIDANCE_PARALLEL, ONE_DEVICE) as (single, parallel, one):
        steps: list[int] = []
        reference = single.denoise(req, lambda step, total: None)
        latents = parallel.denoise(req, lambda step, total: steps.append(step))
        diff = (latents - reference).abs().max().item()
        print(f"\nguidance-parallel vs single-process final latents: max |diff| = {diff:.3e}")
        assert steps == [1, 2, 3, 4]
        # fp32 on the CPU: batch-1 and batch-2 matrix products round differently.
        assert torch.allclose(latents, reference, rtol=1e-4, atol=1e-5)
        frames = parallel.decode(latents)
        assert frames.dtype == np.uint8 and frames.shape == (13, 96, 160, 3)
        # One device, the same code path: the branches one after the other on
        # one replica are the branches side by side on two, bit for bit.
        assert one.parallel is not None and len(one.parallel.replicas) == 1
        assert torch.equal(one.denoise(req, lambda step, total: None), latents)


def test_cancel_by_raising_from_the_step_hook(tiny_model):
    with cpu_engine(tiny_model, **GUIDANCE_PARALLEL) as engine:
        interrupted_at(engine, JobRequest(prompt="waves", width=64, height=64, num_frames=7,
                                          num_inference_steps=5, seed=1), 2)
        # The workers are still usable after a cancelled job.
        engine.denoise(JobRequest(prompt="waves", width=64, height=64, num_frames=7,
                                  num_inference_steps=2, seed=1), lambda s, t: None)


def test_two_guidance_free_jobs_at_once_one_per_lane(tiny_model):
    """Guidance <= 1 leaves the second GPU idle in a guided engine; two such
    jobs instead run at once, one per device lane, each exactly as alone."""
    import threading

    reqs = [JobRequest(prompt="a bird flying over a forest", width=96, height=64, num_frames=7,
                       num_inference_steps=3, guidance_scale=1.0, seed=s) for s in (3, 4)]
    with cpu_engines(tiny_model, ONE_DEVICE, GUIDANCE_PARALLEL) as (single, engine):
        reference = [single.denoise(r, lambda s, t: None) for r in reqs]
        results: dict[int, torch.Tensor] = {}
        errors: list[BaseException] = []

        def run(lane: int) -> None:
            try:
                results[lane] = engine.denoise(reqs[lane], lambda s, t: None, lane=lane)
            except BaseException as err:  # noqa: BLE001 - reported by the assert below
                errors.append(err)

        threads = [threading.Thread(target=run, args=(lane,)) for lane in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for lane in (0, 1):
            assert torch.equal(results[lane], reference[lane]), f"lane {lane}"
        with pytest.raises(ValueError):
            engine.denoise(JobRequest(prompt="a bird", width=64, height=64, num_frames=7,
                                      num_inference_steps=2, guidance_scale=4.5), lambda s, t: None, lane=1)


def test_tokens_major_kernel_path_equals_the_sdpa_path(transformer):
    """The processor's path for FlashAttention-layout kernels (FA4 on a GPU node),
    run here with SDPA in that layout: the same outputs as the stock-equal path,
    up to fp32 rounding."""
    from mochi_runner.parallel.attention_kernels import sdpa_tokens_major
    from mochi_runner.parallel.prefix_attention import PrefixMochiAttnProcessor

    hidden, text, timestep, mask = _inputs()
    reference = replicate(transformer, CPU)
    use_prefix_attention(reference)
    tokens_major = replicate(transformer, CPU)
    for block in tokens_major.transformer_blocks:
        block.attn1.processor = PrefixMochiAttnProcessor(sdpa_tokens_major)
    with torch.inference_mode():
        for i in range(2):  # an empty negative prompt (1 token) and a 9-token prompt
            sl = slice(i, i + 1)
            carrier = length_carrier(mask[sl])
            want = prefix_forward(reference, hidden[sl], text[sl], timestep[sl], mask[sl], carrier)
            got = prefix_forward(tokens_major, hidden[sl], text[sl], timestep[sl], mask[sl], carrier)
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (got - want).abs().max()


def test_fa4_kernel_fails_at_start_up_where_it_cannot_run(tiny_model):
    """No FlashAttention-4 (or no Hopper GPU) here: the engine refuses at load,
    with the reason, rather than failing the first job."""
    with pytest.raises(RuntimeError, match="FlashAttention-4|Hopper"):
        MochiEngine(cpu_config(tiny_model, **GUIDANCE_PARALLEL, attention_kernel="fa4"))
    with pytest.raises(ValueError, match="prefix"):
        MochiEngine(cpu_config(tiny_model, **STOCK, attention_kernel="fa4"))

"""FOR BENCHMARKS ONLY: full-size Mochi-1 with RANDOM weights.

Same classes and sizes as genmo/mochi-1-preview (a 10 B-parameter transformer,
T5-XXL's 4.8 B-parameter encoder, the real VAE), built on the meta device and
filled with random numbers directly on the target device, so start-up takes
seconds and nothing is downloaded. The FLOPs, memory and kernels are the real
model's; the videos are noise. Never serve users from it."""

from __future__ import annotations

import math

import torch

BENCHMARK_ONLY_LABEL = "RANDOM WEIGHTS - benchmark only, videos are noise"

# transformers' T5Config for google/t5-v1_1-xxl, the encoder genmo ships.
T5_XXL = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128,
              feed_forward_proj="gated-gelu", vocab_size=32128, layer_norm_epsilon=1e-6,
              dropout_rate=0.0)


@torch.no_grad()
def fill_random_(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Random values of sensible scale, never zeros (zeros time faster than real data)."""
    for name, p in module.named_parameters():
        if p.ndim >= 2:
            fan_in = math.prod(p.shape[1:])
            p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
        elif name.endswith("bias"):
            p.normal_(0.0, 0.02, generator=generator)
        else:  # norm scales, RoPE frequencies
            p.normal_(1.0 if "norm" in name else 0.0, 0.05, generator=generator)
    for _, b in module.named_buffers():
        if b.is_floating_point():
            b.normal_(0.0, 0.02, generator=generator)
    return module


def _materialise(module: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 seed: int) -> torch.nn.Module:
    # Cast on the meta device first, so the GPU never holds an fp32 copy.
    module = torch.nn.Module.to(module, dtype).to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    return fill_random_(module, gen).eval().requires_grad_(False)


def random_transformer(device: torch.device, dtype: torch.dtype = torch.bfloat16, seed: int = 0):
    from diffusers import MochiTransformer3DModel

    with torch.device("meta"):
        model = MochiTransformer3DModel()  # its defaults are genmo/mochi-1-preview's config
    return _materialise(model, device, dtype, seed)


def random_vae(device: torch.device, dtype: torch.dtype = torch.bfloat16, seed: int = 1):
    from diffusers import AutoencoderKLMochi

    with torch.device("meta"):
        model = AutoencoderKLMochi()
    return _materialise(model, device, dtype, seed)


def random_text_encoder(device: torch.device, dtype: torch.dtype = torch.bfloat16, seed: int = 2):
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        model = T5EncoderModel(T5Config(**T5_XXL))
    return _materialise(model, device, dtype, seed)


def build_random_pipeline(device: torch.device, dtype: torch.dtype = torch.bfloat16):
    """A MochiPipeline of full-size random modules on `device` (see module docstring)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, MochiPipeline

    from mochi_runner.tiny_model import _tokenizer

    tokenizer = _tokenizer()  # word-level; its ids fit T5-XXL's 32128-entry table
    return MochiPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=random_vae(device, dtype),
        text_encoder=random_text_encoder(device, dtype), tokenizer=tokenizer,
        transformer=random_transformer(device, dtype))

"""FLOPs of one batch-1 Mochi transformer forward, counted by PyTorch's
FlopCounterMode on the meta device (no memory, no GPU): matrix products and
attention, the work the tensor cores do."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def latent_shape(width: int, height: int, frames: int) -> tuple[int, int, int, int, int]:
    return (1, 12, (frames - 1) // 6 + 1, height // 8, width // 8)


def branch_inputs(width: int, height: int, frames: int, text_tokens: int, device: torch.device,
                  dtype: torch.dtype, text_dim: int = 4096, seed: int = 1):
    """Random (hidden, text, timestep, mask) of one batch-1 forward at a video
    size, with `text_tokens` valid prompt tokens: what the pipeline hands one replica."""
    gen = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(latent_shape(width, height, frames), device=device, dtype=dtype, generator=gen)
    text = torch.randn(1, 256, text_dim, device=device, dtype=dtype, generator=gen)
    mask = torch.zeros(1, 256, dtype=torch.long, device=device)
    mask[:, :text_tokens] = 1
    return hidden, text, torch.tensor([500.0], device=device), mask


def forward_flops(width: int, height: int, frames: int, text_tokens: int) -> dict[str, float]:
    """{'total', 'attention'} FLOPs of one batch-1 forward with `text_tokens` valid prompt tokens."""
    from diffusers import MochiTransformer3DModel

    from mochi_runner.parallel.prefix_attention import prefix_forward, use_prefix_attention

    with torch.device("meta"):
        transformer = MochiTransformer3DModel()
    use_prefix_attention(transformer)
    heads, head_dim = transformer.config.num_attention_heads, transformer.config.attention_head_dim

    class MetaRope(torch.nn.Module):
        # MochiRoPE opens torch.autocast, which the meta device lacks; its
        # FLOPs are a rounding error next to the blocks'.
        def forward(self, freqs, t, h, w, device=None, dtype=None):
            table = torch.empty(t * h * w, heads, head_dim // 2, device="meta")
            return table, table

    transformer.rope = MetaRope()
    dim = transformer.config.text_embed_dim
    with torch.device("meta"):
        hidden = torch.empty(latent_shape(width, height, frames))
        text = torch.empty(1, 256, dim)
        mask = torch.ones(1, 256, dtype=torch.long)
        timestep = torch.empty(1)
        carrier = torch.empty(1, text_tokens)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        prefix_forward(transformer, hidden, text, timestep, mask, carrier)
    counts = counter.get_flop_counts()["Global"]
    attention = sum(v for k, v in counts.items() if "attention" in str(k) or "bmm" in str(k))
    return {"total": float(counter.get_total_flops()), "attention": float(attention)}


if __name__ == "__main__":
    import json
    import sys

    w, h, f, t = (int(x) for x in sys.argv[1:5]) if len(sys.argv) > 4 else (848, 480, 163, 40)
    print(json.dumps(forward_flops(w, h, f, t)))

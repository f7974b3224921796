"""Mochi's joint attention without a host sync in every layer.

diffusers' `MochiAttnProcessor2_0` finds each prompt's valid tokens with
`torch.nonzero` inside every layer: a device-to-host sync 48 times a forward
pass and a graph break for `torch.compile`. T5's padding makes the valid
tokens a prefix of the 256 (the stock processor already relies on that: it
pads its output at the end), so the number of valid tokens is all it needs.
Here that number travels as the *shape* of a "length carrier" tensor, worked
out once per job on the host. The arithmetic is the stock processor's, op for
op: the same slices (a prefix slice reads the same values as the gather), the
same concatenation, one SDPA over [visual; valid text], zeros for the padded
text positions. Eager, it is bitwise equal to the stock processor (tested).

Under `torch.compile` the carrier's length is marked dynamic, so one compiled
graph serves every prompt length (dynamo specialises a length of 1, the empty
negative prompt, into a second graph)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mochi_runner.parallel.attention_kernels import AttentionKernel, TokensMajorAttention, tokens_major_kernel

if TYPE_CHECKING:
    from diffusers import MochiTransformer3DModel


def _rotary(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    # diffusers 0.42.1, MochiAttnProcessor2_0.apply_rotary_emb, unchanged.
    x_even = x[..., 0::2].float()
    x_odd = x[..., 1::2].float()
    cos = (x_even * freqs_cos - x_odd * freqs_sin).to(x.dtype)
    sin = (x_even * freqs_sin + x_odd * freqs_cos).to(x.dtype)
    return torch.stack([cos, sin], dim=-1).flatten(-2)


Projection = Callable[[torch.Tensor], torch.Tensor]


def _projected(states: torch.Tensor, heads: int, qkv: tuple[Projection, Projection, Projection],
               norm_q: Projection | None, norm_k: Projection | None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query, key and value of one kind of tokens (video or text), each
    (batch, tokens, heads, dim), query and key normed: the stock processor's
    ops in its order."""
    query, key, value = (project(states).unflatten(2, (heads, -1)) for project in qkv)
    if norm_q is not None:
        query = norm_q(query)
    if norm_k is not None:
        key = norm_k(key)
    return query, key, value


class PrefixMochiAttnProcessor:
    """`attention_mask` here is a length carrier: a (batch, valid_tokens) tensor
    whose values are never read. Every sample of a batch has the same length
    (the guidance-parallel path runs batch 1 per device).

    `tokens_major`: an attention kernel in FlashAttention's (batch, tokens,
    heads, dim) layout (attention_kernels.py); None keeps SDPA, op for op the
    stock processor."""

    def __init__(self, tokens_major: TokensMajorAttention | None = None):
        self.tokens_major = tokens_major

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask: torch.Tensor,
                 image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        query, key, value = _projected(hidden_states, attn.heads, (attn.to_q, attn.to_k, attn.to_v),
                                       attn.norm_q, attn.norm_k)
        encoder_query, encoder_key, encoder_value = _projected(
            encoder_hidden_states, attn.heads, (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj),
            attn.norm_added_q, attn.norm_added_k)

        if image_rotary_emb is not None:
            query = _rotary(query, *image_rotary_emb)
            key = _rotary(key, *image_rotary_emb)

        valid = attention_mask.shape[1]
        sequence_length, encoder_sequence_length = query.size(1), encoder_query.size(1)
        if self.tokens_major is not None:
            # A kernel that takes this layout: no transposes around it.
            attn_output = self.tokens_major(
                torch.cat([query, encoder_query[:, :valid]], dim=1),
                torch.cat([key, encoder_key[:, :valid]], dim=1),
                torch.cat([value, encoder_value[:, :valid]], dim=1))
        else:
            query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
            encoder_query, encoder_key, encoder_value = (
                encoder_query.transpose(1, 2), encoder_key.transpose(1, 2), encoder_value.transpose(1, 2))
            attn_output = F.scaled_dot_product_attention(
                torch.cat([query, encoder_query[:, :, :valid]], dim=2),
                torch.cat([key, encoder_key[:, :, :valid]], dim=2),
                torch.cat([value, encoder_value[:, :, :valid]], dim=2),
                dropout_p=0.0, is_causal=False).transpose(1, 2)

        # (batch, tokens, heads, dim) from either kernel; the prompt's padding
        # tokens get zeros, as in the stock processor.
        attn_output = F.pad(attn_output, (0, 0, 0, 0, 0, sequence_length + encoder_sequence_length
                                          - attn_output.size(1)))
        hidden_states, encoder_hidden_states = attn_output.flatten(2, 3).split_with_sizes(
            (sequence_length, encoder_sequence_length), dim=1)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if hasattr(attn, "to_add_out"):
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        return hidden_states, encoder_hidden_states


class NotAPrefixMask(ValueError):
    pass


def length_carrier(mask: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """The (batch, valid) carrier for a prompt mask, on `device` (default: the
    mask's); one host sync, once per job."""
    lengths = mask.sum(dim=1).tolist()
    valid = int(lengths[0])
    if any(int(n) != valid for n in lengths):
        raise NotAPrefixMask(f"prompts of one batch have different lengths {lengths}")
    if not bool(mask[:, :valid].all()) or bool(mask[:, valid:].any()):
        raise NotAPrefixMask("the prompt's valid tokens are not a prefix of the mask")
    # A fresh tensor of those ones rather than a view of the mask: a view of a
    # batch's second row has a storage offset, which dynamo guards on, and the
    # guided and guidance-free paths would each compile their own graphs.
    carrier = torch.ones((mask.shape[0], valid), dtype=mask.dtype, device=device or mask.device)
    # One compiled graph for every prompt length instead of one per length.
    # (Marked after the move: the mark belongs to the tensor object.)
    torch._dynamo.maybe_mark_dynamic(carrier, 1)
    return carrier


def mark_sequence_dynamic(hidden_states: torch.Tensor, image_rotary_emb: tuple[torch.Tensor, ...]) -> None:
    """The visual token count (width x height x frames) dynamic from a block's
    first compile: one graph per block kind serves every video size, so a job
    of a size not seen before compiles nothing (issue 22), and a warm restart
    traces one graph per block kind instead of a static one and then a dynamic
    one. (Marked per block: each block's input is a new tensor.)"""
    torch._dynamo.maybe_mark_dynamic(hidden_states, 1)
    for part in image_rotary_emb:
        torch._dynamo.maybe_mark_dynamic(part, 0)


def use_prefix_attention(transformer: MochiTransformer3DModel, kernel: AttentionKernel = "sdpa") -> None:
    tokens_major = tokens_major_kernel(kernel)
    for block in transformer.transformer_blocks:
        block.attn1.processor = PrefixMochiAttnProcessor(tokens_major)


def prefix_forward(transformer, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                   timestep: torch.Tensor, encoder_attention_mask: torch.Tensor,
                   carrier: torch.Tensor) -> torch.Tensor:
    """`MochiTransformer3DModel.forward` of diffusers 0.42.1, unchanged except
    that the blocks get the length carrier where they got the mask; the
    caption pooling in `time_embed` still gets the real mask."""
    batch_size, _, num_frames, height, width = hidden_states.shape
    p = transformer.config.patch_size
    post_patch_height = height // p
    post_patch_width = width // p

    temb, encoder_hidden_states = transformer.time_embed(
        timestep, encoder_hidden_states, encoder_attention_mask, hidden_dtype=hidden_states.dtype)

    hidden_states = hidden_states.permute(0, 2, 1, 3, 4).flatten(0, 1)
    hidden_states = transformer.patch_embed(hidden_states)
    hidden_states = hidden_states.unflatten(0, (batch_size, -1)).flatten(1, 2)

    image_rotary_emb = transformer.rope(
        transformer.pos_frequencies, num_frames, post_patch_height, post_patch_width,
        device=hidden_states.device, dtype=torch.float32)

    for block in transformer.transformer_blocks:
        mark_sequence_dynamic(hidden_states, image_rotary_emb)
        hidden_states, encoder_hidden_states = block(
            hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, temb=temb,
            encoder_attention_mask=carrier, image_rotary_emb=image_rotary_emb)
    hidden_states = transformer.norm_out(hidden_states, temb)
    hidden_states = transformer.proj_out(hidden_states)

    hidden_states = hidden_states.reshape(batch_size, num_frames, post_patch_height, post_patch_width, p, p, -1)
    hidden_states = hidden_states.permute(0, 6, 1, 2, 4, 3, 5)
    return hidden_states.reshape(batch_size, -1, num_frames, height, width)

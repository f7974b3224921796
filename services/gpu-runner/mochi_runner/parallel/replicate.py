"""Identical copies of a diffusers model on other devices."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import ModelMixin


@torch.no_grad()
def replicate(module: ModelMixin, device: torch.device) -> ModelMixin:
    """Built empty on the meta device, then filled by copies from `module`, so
    the copy never passes through host memory and is bitwise the same."""
    dtype = next(module.parameters()).dtype
    with torch.device("meta"):
        clone = type(module).from_config(module.config)
    # nn.Module.to: ModelMixin.to warns about fp32 modules, of which Mochi has none.
    clone = torch.nn.Module.to(clone.to_empty(device=device), dtype)
    clone.load_state_dict(module.state_dict(), strict=True)
    for (_, src), (_, dst) in zip(module.named_buffers(), clone.named_buffers(), strict=True):
        dst.copy_(src)  # non-persistent buffers are not in the state dict
    return clone.eval().requires_grad_(False)

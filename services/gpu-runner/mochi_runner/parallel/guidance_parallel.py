"""Guidance-parallel denoising: the pipeline's batch of 2 ([unconditional,
conditional]) is split so that each device runs one branch on its own
transformer replica, at the same time; the two noise predictions are copied
back to the first device, where diffusers' MochiPipeline does guidance and the
scheduler step in fp32 exactly as it does for one device.

It stands in for `pipe.transformer`, so the pipeline, its step callback (progress,
cancel by raising) and everything around it are diffusers' own, unforked.

Math: each branch is the batch-1 forward of that branch alone, so it is
bitwise equal to computing that branch alone on one device (tested). Against
the stock batch-2 call the results differ only by rounding: batch-1 and batch-2
matrix products may round differently."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from mochi_runner.parallel.compile_gate import GATE
from mochi_runner.parallel.device_worker import DeviceWorker, gather
from mochi_runner.parallel.attention_kernels import AttentionKernel
from mochi_runner.parallel.prefix_attention import length_carrier, prefix_forward, use_prefix_attention

if TYPE_CHECKING:
    from diffusers import MochiTransformer3DModel


class GuidanceParallelTransformer(torch.nn.Module):
    """A `MochiTransformer3DModel` look-alike over one replica per device."""

    def __init__(self, replicas: Sequence[MochiTransformer3DModel], prefix_attention: bool = True,
                 output_device: torch.device | None = None, attention_kernel: AttentionKernel = "sdpa"):
        super().__init__()
        if not replicas:
            raise ValueError("need at least one transformer replica")
        # A plain list, not submodules: `pipe.to(device)` must never gather the
        # replicas onto one device.
        self._replicas = list(replicas)
        self.devices = [next(r.parameters()).device for r in self._replicas]
        self.workers = [DeviceWorker(d) for d in self.devices]
        # Where the pipeline keeps its latents; the predictions come back here.
        self.output_device = output_device or self.devices[0]
        self.prefix_attention = prefix_attention
        if attention_kernel != "sdpa" and not prefix_attention:
            raise ValueError(f"attention_kernel={attention_kernel} runs inside the prefix processor; "
                             "turn prefix_attention on")
        if prefix_attention:
            for replica in self._replicas:
                use_prefix_attention(replica, attention_kernel)
        self.config = self._replicas[0].config
        # Length carriers of the current job, per device, keyed by the mask
        # object the pipeline hands in each step. Holding the mask keeps its
        # id from being reused by the next job's mask.
        self._mask: torch.Tensor | None = None
        self._carriers: list[torch.Tensor] = []

    @property
    def replicas(self) -> list[MochiTransformer3DModel]:
        return self._replicas

    @property
    def device(self) -> torch.device:
        return self.output_device

    @property
    def dtype(self) -> torch.dtype:
        return next(self._replicas[0].parameters()).dtype

    @contextlib.contextmanager
    def cache_context(self, name: str) -> Iterator[None]:
        # The pipeline opens diffusers' cache context; no cache is used here.
        yield

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                timestep: torch.Tensor, encoder_attention_mask: torch.Tensor,
                attention_kwargs: dict | None = None, return_dict: bool = True):
        if attention_kwargs:
            raise ValueError("attention_kwargs (LoRA scale) are not supported on the parallel path")
        batch = hidden_states.shape[0]
        n = len(self.workers)
        if self.prefix_attention:
            # One branch per forward, since a length carrier holds one prompt
            # length (the prompt and the empty negative prompt differ). Branch
            # i runs on replica i % n: with a replica per branch they run at
            # once; with one replica (a one-GPU runner) one after the other on
            # it, in order, so the weights exist once.
            chunks = [(i % n, slice(i, i + 1)) for i in range(batch)]
        else:
            # Stock processor: a batch of 2 splits over the devices; without
            # guidance (batch 1) the first replica runs it alone.
            n = min(n, batch)
            if batch % n:
                raise ValueError(f"batch {batch} does not split over {n} devices")
            size = batch // n
            chunks = [(i, slice(i * size, (i + 1) * size)) for i in range(n)]
        carriers = self._carriers_for(encoder_attention_mask, chunks)

        futures = [
            self.workers[r].submit(
                self._branch, r, hidden_states[sl], encoder_hidden_states[sl], timestep[sl],
                encoder_attention_mask[sl], carriers[k] if carriers else None)
            for k, (r, sl) in enumerate(chunks)]
        outputs = gather(futures)
        # The exchange: one noise prediction per branch, device to device.
        out = torch.cat([o.to(self.device) for o in outputs])
        return (out,) if not return_dict else _Output(out)

    def _branch(self, i: int, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                timestep: torch.Tensor, mask: torch.Tensor, carrier: torch.Tensor | None) -> torch.Tensor:
        device = self.devices[i]
        replica = self._replicas[i]
        # A new input signature may compile: see compile_gate.py.
        signature = (id(replica), tuple(hidden_states.shape), None if carrier is None else carrier.shape[1] == 1)
        with GATE.call(signature):
            return self._forward(replica, device, hidden_states, encoder_hidden_states, timestep, mask, carrier)

    def _forward(self, replica: MochiTransformer3DModel, device: torch.device, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor, timestep: torch.Tensor, mask: torch.Tensor,
                 carrier: torch.Tensor | None) -> torch.Tensor:
        hidden_states = hidden_states.to(device)
        encoder_hidden_states = encoder_hidden_states.to(device)
        timestep = timestep.to(device)
        mask = mask.to(device)
        if carrier is None:
            return replica(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                           timestep=timestep, encoder_attention_mask=mask, return_dict=False)[0]
        return prefix_forward(replica, hidden_states, encoder_hidden_states, timestep, mask, carrier)

    def _carriers_for(self, mask: torch.Tensor, chunks: list[tuple[int, slice]]) -> list[torch.Tensor]:
        if not self.prefix_attention:
            return []
        if self._mask is not mask or len(self._carriers) != len(chunks):
            self._mask = mask
            self._carriers = [length_carrier(mask[sl], self.devices[r]) for r, sl in chunks]
        return self._carriers


class _Output:
    """What `return_dict=True` gives in diffusers: `.sample`."""

    def __init__(self, sample: torch.Tensor):
        self.sample = sample

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.sample,)[index]

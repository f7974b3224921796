"""The VAE decode split over devices by tiles equals the one-device tiled decode."""

from __future__ import annotations

import torch

from mochi_runner.parallel.device_worker import DeviceWorker
from mochi_runner.parallel.replicate import replicate
from mochi_runner.parallel.vae_split import needs_tiling, split_tiled_decode
from mochi_runner.tiny_model import build_tiny_pipeline

CPU = torch.device("cpu")


def test_split_tiled_decode_is_bitwise_the_tiled_decode():
    vae = build_tiny_pipeline().vae.eval().requires_grad_(False)
    vae.enable_tiling()
    # 512 x 320 pixels: latent 64 x 40, so 3 x 2 overlapping tiles, edge tiles smaller.
    z = torch.randn(1, 12, 2, 40, 64, generator=torch.Generator().manual_seed(3))
    assert needs_tiling(vae, z)
    vaes = [vae, replicate(vae, CPU)]
    for v in vaes[1:]:
        v.enable_tiling()
    workers = [DeviceWorker(CPU), DeviceWorker(CPU)]
    try:
        with torch.inference_mode():
            reference = vae.decode(z, return_dict=False)[0]
            split = split_tiled_decode(vaes, workers, z)
        assert split.shape == reference.shape == (1, 3, 7, 320, 512)
        assert torch.equal(split, reference)
    finally:
        for w in workers:
            w.close()

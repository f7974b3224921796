"""Mochi's tiled VAE decode with its tiles spread over several devices.

`AutoencoderKLMochi.tiled_decode` (diffusers 0.42.1) decodes overlapping
spatial tiles one after another, each on its own, and then blends them. The
tiles do not depend on each other, so each device decodes its share on its
own VAE replica; the blending then runs on the first device with the same
code. Each tile is computed exactly as on one device, so the result is the
single-device tiled decode (tested)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mochi_runner.parallel.compile_gate import GATE
from mochi_runner.parallel.device_worker import DeviceWorker, gather

Tile = tuple[int, int]  # (row start, column start) in latent pixels


def _tile_starts(vae, height: int, width: int) -> list[Tile]:
    stride_h = vae.tile_sample_stride_height // vae.spatial_compression_ratio
    stride_w = vae.tile_sample_stride_width // vae.spatial_compression_ratio
    return [(i, j) for i in range(0, height, stride_h) for j in range(0, width, stride_w)]


def _share(tiles: list[Tile], vae, height: int, width: int, n: int) -> list[list[Tile]]:
    """Largest tiles first, each to the least loaded device (edge tiles are smaller)."""
    tile_h = vae.tile_sample_min_height // vae.spatial_compression_ratio
    tile_w = vae.tile_sample_min_width // vae.spatial_compression_ratio

    def area(t: Tile) -> int:
        return (min(t[0] + tile_h, height) - t[0]) * (min(t[1] + tile_w, width) - t[1])

    shares: list[list[Tile]] = [[] for _ in range(n)]
    loads = [0] * n
    for tile in sorted(tiles, key=area, reverse=True):
        k = loads.index(min(loads))
        shares[k].append(tile)
        loads[k] += area(tile)
    return shares


def needs_tiling(vae, z: torch.Tensor) -> bool:
    height, width = z.shape[-2:]
    return vae.use_tiling and (width > vae.tile_sample_min_width // vae.spatial_compression_ratio
                               or height > vae.tile_sample_min_height // vae.spatial_compression_ratio)


def _decode_tiles(vae, z: torch.Tensor, tiles: list[Tile]) -> dict[Tile, torch.Tensor]:
    tile_h = vae.tile_sample_min_height // vae.spatial_compression_ratio
    tile_w = vae.tile_sample_min_width // vae.spatial_compression_ratio
    z = z.to(next(vae.parameters()).device)
    out: dict[Tile, torch.Tensor] = {}
    for i, j in tiles:
        with GATE.shared():  # the VAE is not compiled; see compile_gate.py
            time, _ = vae.decoder(z[:, :, :, i:i + tile_h, j:j + tile_w])
        if vae.drop_last_temporal_frames and time.size(2) >= vae.temporal_compression_ratio:
            time = time[:, :, vae.temporal_compression_ratio - 1:]
        out[(i, j)] = time
    return out


def split_tiled_decode(vaes: Sequence[torch.nn.Module], workers: Sequence[DeviceWorker],
                       z: torch.Tensor) -> torch.Tensor:
    """Decode latents `z` (already unscaled) to a video tensor on the first VAE's device."""
    primary = vaes[0]
    if primary.use_framewise_decoding:
        raise ValueError("framewise decoding is not split; use the VAE's own decode")
    _, _, _, height, width = z.shape
    tiles = _tile_starts(primary, height, width)
    shares = _share(tiles, primary, height, width, len(vaes))
    futures = [worker.submit(_decode_tiles, vae, z, share)
               for vae, worker, share in zip(vaes, workers, shares, strict=True) if share]
    decoded: dict[Tile, torch.Tensor] = {}
    device = next(primary.parameters()).device
    for part in gather(futures):
        decoded.update({t: v.to(device) for t, v in part.items()})
    return _blend(primary, decoded, height, width)


def _blend(vae, decoded: dict[Tile, torch.Tensor], height: int, width: int) -> torch.Tensor:
    # The second half of AutoencoderKLMochi.tiled_decode (diffusers 0.42.1), unchanged.
    sample_height = height * vae.spatial_compression_ratio
    sample_width = width * vae.spatial_compression_ratio
    stride_h = vae.tile_sample_stride_height // vae.spatial_compression_ratio
    stride_w = vae.tile_sample_stride_width // vae.spatial_compression_ratio
    blend_height = vae.tile_sample_min_height - vae.tile_sample_stride_height
    blend_width = vae.tile_sample_min_width - vae.tile_sample_stride_width
    rows = [[decoded[(i, j)] for j in range(0, width, stride_w)] for i in range(0, height, stride_h)]
    result_rows = []
    for i, row in enumerate(rows):
        result_row = []
        for j, tile in enumerate(row):
            if i > 0:
                tile = vae.blend_v(rows[i - 1][j], tile, blend_height)
            if j > 0:
                tile = vae.blend_h(row[j - 1], tile, blend_width)
            result_row.append(tile[:, :, :, :vae.tile_sample_stride_height, :vae.tile_sample_stride_width])
        result_rows.append(torch.cat(result_row, dim=4))
    return torch.cat(result_rows, dim=3)[:, :, :, :sample_height, :sample_width]

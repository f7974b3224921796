"""MP4 encode time of the default video's frames (848x480, 163 frames of noise,
the worst case for the encoder) under libx264 presets, with frame threads.

    python bench/mp4_presets.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mochi_runner.video_encode import encode_mp4

frames = np.random.default_rng(0).integers(0, 256, (163, 480, 848, 3), dtype=np.uint8)
smooth = np.repeat(np.repeat(frames[:, ::8, ::8], 8, axis=1), 8, axis=2)[:, :480, :848].copy()
with tempfile.TemporaryDirectory() as tmp:
    for name, data in (("noise", frames), ("8x8 blocks", smooth)):
        for preset in ("medium", "fast", "veryfast"):
            path = Path(tmp) / f"{preset}.mp4"
            started = time.perf_counter()
            size = encode_mp4(data, 30, path, preset=preset)
            print(f"{name:10s} preset {preset:8s} {time.perf_counter() - started:6.2f} s  {size / 1e6:7.1f} MB",
                  flush=True)

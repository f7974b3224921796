"""Frames to an H.264 MP4 that browsers play (yuv420p, moov atom first), and
the thumbnails beside it: a JPEG poster and a short muted clip."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Pipeline output in [0, 1] floats to 8-bit RGB."""
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# libx264's preset trades encode time for file size at the same quality (CRF).
# On the GPU node's 16 cores, 163 frames of 848x480: medium 3.46 s, veryfast
# 0.78 s, files 6% larger (docs/benchmarks.md). The encode sits in every job's
# submit-to-download time, so the default is veryfast.
DEFAULT_PRESET = "veryfast"


def encode_mp4(frames: np.ndarray, fps: int, path: Path, crf: int = 18, preset: str = DEFAULT_PRESET) -> int:
    """Write T x H x W x 3 uint8 frames; return the file size in bytes."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected T x H x W x 3 uint8 frames, got {frames.shape} {frames.dtype}")
    _, height, width, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as box:
        stream = box.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        # Frame threads as well as slices: 163 frames encode in 2.95 s instead
        # of 4.85 s on the GPU node with preset medium (docs/benchmarks.md).
        stream.thread_type = "AUTO"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    return path.stat().st_size


# ---- thumbnails: a poster and a short clip for the gallery's tiles ----------------

POSTER_MAX_WIDTH = 480
CLIP_MAX_WIDTH = 320
CLIP_MAX_SECONDS = 3.0
# A tile is small and plays muted in a grid of many: quality well below the
# video's (CRF 18), capped so a noisy clip (the tiny model's) stays small too.
CLIP_CRF = 30
CLIP_MAXRATE = "400k"


def _scaled(width: int, height: int, max_width: int) -> tuple[int, int]:
    """At most max_width wide, the aspect kept, both even (4:2:0 chroma); never enlarged."""
    new_w = min(width, max_width)
    new_h = round(height * new_w / width)
    return max(2, new_w - new_w % 2), max(2, new_h - new_h % 2)


def poster_frame_index(num_frames: int) -> int:
    """A third into the clip: past any fade-in of the first frames, and before
    the motion of a long clip has drifted far from the prompt's opening."""
    return min(num_frames - 1, num_frames // 3)


def encode_poster(frames: np.ndarray, path: Path) -> int:
    """A JPEG of one representative frame of T x H x W x 3 uint8 frames, at
    most POSTER_MAX_WIDTH wide; return the file size in bytes."""
    _check_frames(frames)
    _, height, width, _ = frames.shape
    out_w, out_h = _scaled(width, height, POSTER_MAX_WIDTH)
    frame = av.VideoFrame.from_ndarray(frames[poster_frame_index(len(frames))], format="rgb24")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = out_w, out_h, "yuvj420p"  # yuvj: full-range JPEG
    codec.time_base = Fraction(1, 1)
    codec.options = {"qmin": "2", "qmax": "5"}  # a poster is looked at still: near the best JPEG quality
    scaled = frame.reformat(width=out_w, height=out_h, format="yuvj420p", interpolation="AREA")
    data = b"".join(bytes(p) for p in [*codec.encode(scaled), *codec.encode(None)])
    path.write_bytes(data)
    return len(data)


def encode_clip(frames: np.ndarray, fps: int, path: Path, preset: str = DEFAULT_PRESET) -> int:
    """The first CLIP_MAX_SECONDS of the frames as a small H.264 MP4 with no
    audio stream, at most CLIP_MAX_WIDTH wide; return the file size in bytes."""
    _check_frames(frames)
    _, height, width, _ = frames.shape
    out_w, out_h = _scaled(width, height, CLIP_MAX_WIDTH)
    count = max(1, min(len(frames), int(CLIP_MAX_SECONDS * fps)))
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as box:
        stream = box.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        stream.options = {"crf": str(CLIP_CRF), "preset": preset, "maxrate": CLIP_MAXRATE,
                          "bufsize": CLIP_MAXRATE}
        stream.thread_type = "AUTO"
        for frame in frames[:count]:
            small = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
                width=out_w, height=out_h, format="yuv420p", interpolation="AREA")
            for packet in stream.encode(small):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    return path.stat().st_size


def decode_mp4(path: Path) -> tuple[np.ndarray, int]:
    """A stored MP4 back to T x H x W x 3 uint8 frames and its frame rate:
    thumbnails for a video that an earlier delivery stored."""
    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        fps = round(float(stream.average_rate or stream.base_rate or 24))
        frames = [frame.to_ndarray(format="rgb24") for frame in box.decode(stream)]
    if not frames:
        raise ValueError(f"{path} has no video frames")
    return np.stack(frames), fps


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"expected T x H x W x 3 uint8 frames, got {frames.shape} {frames.dtype}")

from __future__ import annotations

import os
import socket
from typing import Annotated, Literal

import msgspec

from mochi_common.storage import StoreSettings
from mochi_contracts.scheduling import Scheduling


def _default_runner_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class RunnerSettings(StoreSettings, kw_only=True, frozen=True):
    # store_url and the s3_* fields come from StoreSettings, nats_url,
    # jetstream_replicas, log_level and health_* from ServiceSettings.
    # A directory in the layout of genmo/mochi-1-preview (diffusers format).
    model_dir: str = "var/models/tiny-mochi"
    # Where work comes from: `fifo` pulls submissions from `gpu-runners`, `fair`
    # the fair-share scheduler's releases from `released-runners` (docs/scheduling.md).
    scheduling: Scheduling = "fifo"
    # Build the tiny random model into model_dir if it is missing (embedded default only).
    build_tiny_model: bool = False
    device: str = "auto"  # auto: cuda if present, else cpu
    dtype: str = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    vae_tiling: bool = True
    # Two or more devices, comma-separated ("cuda:0,cuda:1"): one transformer
    # and VAE replica per device, guidance branches and VAE tiles in parallel.
    devices: str = ""
    # The exact attention processor without diffusers' per-layer host sync.
    prefix_attention: bool = True
    # The attention kernel inside it: "sdpa" (PyTorch's pick, cuDNN on Hopper)
    # or "fa4" (FlashAttention-4, the `fa4` extra; Hopper/Blackwell, multi-device path).
    attention_kernel: Literal["sdpa", "fa4"] = "sdpa"
    # torch.compile each transformer block at start-up (slower start, faster steps).
    compile_blocks: bool = False
    # torch.compile's caches (inductor's FX graphs and autotuning, Triton's
    # kernels) under this directory, on the node's disk: a runner restarted on
    # the same node reuses what it compiled instead of compiling again.
    # "" keeps torch's default (a folder under /tmp, lost with the container).
    compile_cache_dir: str = ""
    # FOR BENCHMARKS ONLY: full-size Mochi with RANDOM weights instead of
    # model_dir; every video is noise. Never set on a runner that serves users.
    random_weights_for_benchmarks: bool = False
    # The warm-up render's size: set it to the size jobs use when compiling.
    warmup_width: int = 64
    warmup_height: int = 64
    warmup_frames: int = 7
    # Store calls that fail transiently (connection, 5xx, throttling) are tried
    # this many times in all, waiting first_delay_s, doubling up to max_delay_s.
    store_retry_attempts: Annotated[int, msgspec.Meta(ge=1)] = 6
    store_retry_first_delay_s: float = 0.5
    store_retry_max_delay_s: float = 8.0
    runner_id: str = msgspec.field(default_factory=_default_runner_id)
    ack_wait_s: float = 60.0
    max_deliver: int = 5
    # How long one publish of a job's event waits for NATS; past it NATS counts
    # as down: the attempt fails and JetStream redelivers it.
    publish_patience_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    # A job running longer than this fails with the reason (0: no limit).
    max_run_s: Annotated[float, msgspec.Meta(ge=0)] = 7200.0
    # Past max_run_s a render is asked to stop at its next step; if it has not
    # stopped this much later (a step, the decode or the encode hangs), the job
    # fails, its heartbeats stop, and the runner reports itself not alive.
    hang_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    # /healthz fails when a render made no step (nor began its decode or encode)
    # for this long, so Kubernetes restarts a runner whose GPU hangs (0: never).
    step_stall_s: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    # libx264 preset of the MP4 (ultrafast ... veryslow): slower presets make
    # files a few percent smaller at the same quality (crf 18) and add seconds
    # to every job's latency; see mochi_runner/video_encode.py.
    mp4_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                        "slower", "veryslow"] = "veryfast"
    # Jobs past their render still encoding and uploading, beyond which the
    # runner pulls no more: a store outage must not pile up decoded videos.
    max_uploading_jobs: Annotated[int, msgspec.Meta(ge=1)] = 2
    # Save a render's latents (the JetStream object store bucket of
    # mochi_contracts.streams.CHECKPOINT_BUCKET) after every this many steps,
    # besides at a SIGTERM hand-over and once denoising ends; a SIGKILLed
    # runner's job then resumes elsewhere losing at most this many steps.
    # 0: only at the hand-over and the end of denoising. Why 4: a default
    # job's latents are 4.27 MB (bf16 12x28x60x106); one upload took 0.29 s
    # (median of 8, max 0.37 s) into a local one-node bucket on a loaded
    # 2-core machine, well inside one 2.88 s two-GPU step, so the interval is
    # not bound by the upload but by what a SIGKILL may cost beside the 60 s
    # ack wait: 4 steps are at most 11.5 s (a fifth of it) for 0.37 MB/s of
    # JetStream writes per runner (times the replicas). The GPU side (host
    # copy, its effect on the step) is bench/checkpoint_cost.py's to measure.
    checkpoint_every_steps: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 4
    # How long a hand-over (SIGTERM) or a failed attempt waits for its last
    # checkpoint's upload before it hands the job back anyway.
    checkpoint_wait_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    # A live preview of a render in progress at most this often (issue 24,
    # mochi_runner/previews.py); 0 makes none. Its GPU part (4 latent frames
    # projected to RGB) is bench/preview_cost.py's to measure against a step.
    preview_every_s: Annotated[float, msgspec.Meta(ge=0)] = 3.0
    # FOR FAULT-INJECTION TESTS ONLY (tests/test_resume.py): the first this
    # many decodes of this process raise torch.OutOfMemoryError, as a VAE
    # decode past the GPU's memory does. A CPU has no memory limit to run
    # out of on cue, and the path under test (the failed attempt, its saved
    # latents, the redelivery that only decodes) is the handler's, whatever
    # the GPU. Never set on a runner that serves users.
    fault_injection_decode_oom: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Warm the model with one tiny render before pulling work.
    warmup: bool = True

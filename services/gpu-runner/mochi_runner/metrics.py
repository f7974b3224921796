"""The runner's Prometheus metrics, served on /metrics by mochi_common.health_server.

Every metric is defined here, once. The metric objects live in
prometheus_client's default registry, the one piece of process-wide mutable
state this module keeps (the accepted exception: it is what the health server
exposes). Everything else is passed in or held by the caller."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Literal

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# A denoising step takes ~0.01 s on the tiny CPU model and seconds to tens of
# seconds for full-size Mochi-1 on one GPU.
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
# A job: well under a second (tiny model) to an hour (163 frames, 200 steps).
JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200)

STEP_SECONDS = Histogram(
    "mochi_runner_step_seconds",
    "Seconds per denoising step of a job (the first step includes prompt encoding)",
    buckets=STEP_BUCKETS)
RENDER_SECONDS = Histogram(
    "mochi_runner_render_seconds",
    "Seconds a job spent rendering on this runner (denoise and decode, no encode or upload)",
    buckets=JOB_BUCKETS)
JOB_SECONDS = Histogram(
    "mochi_runner_job_seconds",
    "Seconds from a job's submission (its submitted event) to its video being stored",
    buckets=JOB_BUCKETS)

Outcome = Literal["completed", "failed", "retried", "cancelled", "handed_back"]
OUTCOMES: tuple[Outcome, ...] = ("completed", "failed", "retried", "cancelled", "handed_back")
JOBS_FINISHED = Counter(
    "mochi_runner_jobs_finished",
    "Deliveries this runner finished, by outcome: completed, failed (the job's final failure), "
    "retried (an attempt failed and the job was handed back for another), cancelled, "
    "handed_back (shutdown)",
    ["outcome"])
for _outcome in OUTCOMES:
    JOBS_FINISHED.labels(outcome=_outcome)  # every outcome reads 0 before it first happens

BUSY = Gauge("mochi_runner_busy",
             "Jobs rendering on this runner's GPUs now (2 for two guidance-free jobs, one per GPU)")
# Buckets for the gaps between jobs: the target is under 2 s with work queued.
GPU_IDLE_SECONDS = Histogram(
    "mochi_runner_gpu_idle_seconds",
    "Seconds a job's GPU lanes sat idle before its render: from the previous render's end on those "
    "lanes to this one's start (includes any time no job was queued)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600))
STARTUP_SECONDS = Gauge(
    "mochi_runner_startup_seconds",
    "Seconds from the runner's start (imports done; see process_start_time_seconds) to ready: "
    "model loaded and warmed, NATS connected, consumer bound")

# Checkpoints of renders in progress (checkpoints.py, issue 20).
STEPS_RENDERED = Counter(
    "mochi_runner_denoising_steps_rendered",
    "Denoising steps this runner rendered (a resumed job counts only the steps after its checkpoint)")
STEPS_RESUMED = Counter(
    "mochi_runner_denoising_steps_resumed",
    "Denoising steps this runner did not render again because a job resumed from a checkpoint")
RESUMES = Counter(
    "mochi_runner_resumes",
    "Jobs this runner resumed from a checkpoint, by whether the checkpoint came from the same engine "
    "configuration (bit-for-bit) or another one (another attention kernel, device count, ...)",
    ["configuration"])
CheckpointOutcome = Literal["saved", "skipped_busy", "failed"]
CHECKPOINTS = Counter(
    "mochi_runner_checkpoints",
    "Checkpoints of renders in progress, by outcome: saved, skipped_busy (the job's previous "
    "checkpoint was still uploading), failed (the upload failed; the render went on)",
    ["outcome"])
CHECKPOINTS_REJECTED = Counter(
    "mochi_runner_checkpoints_rejected",
    "Checkpoints found at a job's start that failed verification (the job rendered from step 0), by reason",
    ["reason"])
CHECKPOINT_STORE_UNAVAILABLE = Counter(
    "mochi_runner_checkpoint_store_unavailable",
    "Checkpoint store calls that found the bucket away (jobs then render without checkpoints), by operation",
    ["operation"])
CHECKPOINT_UPLOAD_SECONDS = Histogram(
    "mochi_runner_checkpoint_upload_seconds",
    "Seconds from a checkpoint's latents leaving the step to their upload's end (host copy, checksum, upload)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
for _label in ("saved", "skipped_busy", "failed"):
    CHECKPOINTS.labels(outcome=_label)
for _label in ("same", "other"):
    RESUMES.labels(configuration=_label)

# Thumbnails beside each video (thumbnails.py, issue 24): never a job's failure.
ThumbnailOutcome = Literal["stored", "already_stored", "failed"]
THUMBNAILS = Counter(
    "mochi_runner_thumbnails",
    "Poster and clip pairs for completed jobs, by outcome: stored, already_stored (an earlier delivery "
    "stored them), failed (making or storing them failed; the job completed without them)",
    ["outcome"])
for _label in ("stored", "already_stored", "failed"):
    THUMBNAILS.labels(outcome=_label)


def finished(outcome: Outcome) -> None:
    JOBS_FINISHED.labels(outcome=outcome).inc()


def observe_job_since(submitted_at: datetime) -> None:
    """Submit-to-stored time, from the submitted event's UTC time (another host's
    clock: skew shows up here, and a negative span is counted as 0)."""
    JOB_SECONDS.observe(max((datetime.now(UTC) - submitted_at).total_seconds(), 0.0))


class StepClock:
    """Times one render's steps: `tick()` after each step observes the time
    since the previous tick (or since the clock was made, for the first)."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()

    def tick(self) -> None:  # called from the render thread; prometheus_client is thread-safe
        now = time.perf_counter()
        STEP_SECONDS.observe(now - self.last)
        self.last = now

    def observe_render(self) -> None:
        RENDER_SECONDS.observe(time.perf_counter() - self.started)


class GpuMemoryCollector(Collector):
    """Memory of each CUDA device the engine uses, read at scrape time."""

    def __init__(self, devices: Sequence[object]):
        self.devices = [str(d) for d in devices]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import torch

        families = {
            "allocated": GaugeMetricFamily(
                "mochi_runner_gpu_memory_allocated_bytes",
                "Bytes held by tensors on the device (torch.cuda.memory_allocated)", labels=["device"]),
            "max_allocated": GaugeMetricFamily(
                "mochi_runner_gpu_memory_max_allocated_bytes",
                "Peak bytes held by tensors since start (torch.cuda.max_memory_allocated)",
                labels=["device"]),
            "reserved": GaugeMetricFamily(
                "mochi_runner_gpu_memory_reserved_bytes",
                "Bytes reserved by PyTorch's caching allocator (torch.cuda.memory_reserved)",
                labels=["device"]),
            "free": GaugeMetricFamily(
                "mochi_runner_gpu_memory_free_bytes",
                "Free bytes on the device, all processes counted (torch.cuda.mem_get_info)",
                labels=["device"]),
            "total": GaugeMetricFamily(
                "mochi_runner_gpu_memory_total_bytes",
                "Total bytes on the device (torch.cuda.mem_get_info)", labels=["device"]),
        }
        for device in self.devices:
            free, total = torch.cuda.mem_get_info(device)
            families["allocated"].add_metric([device], torch.cuda.memory_allocated(device))
            families["max_allocated"].add_metric([device], torch.cuda.max_memory_allocated(device))
            families["reserved"].add_metric([device], torch.cuda.memory_reserved(device))
            families["free"].add_metric([device], free)
            families["total"].add_metric([device], total)
        yield from families.values()


def watch_gpu_memory(devices: Iterable[object]) -> GpuMemoryCollector | None:
    """Report the memory of the CUDA devices among `devices` (torch.device or
    names); on a CPU-only runner nothing is registered and the metrics are absent."""
    import torch

    cuda = [d for d in devices if str(d).startswith("cuda")]
    if not cuda or not torch.cuda.is_available():
        return None
    collector = GpuMemoryCollector(cuda)
    REGISTRY.register(collector)
    return collector

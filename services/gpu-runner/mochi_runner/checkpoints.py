"""Checkpoints of renders in progress (issue 20): a job interrupted is a job continued.

What a checkpoint holds: the latents after the newest saved step, that step,
and what they were made from (a digest of the job id and the request fields
that decide the latents, a digest of the model, the engine configuration).
resume_schedule.ResumedScheduler says why the latents and the step are all the state
the remaining steps need. One object per job in the JetStream object store
bucket mochi_contracts.streams.CHECKPOINT_BUCKET, named by the job id; each
save replaces the previous one.

The object: MAGIC, a 4-byte big-endian header length, the header (JSON), the
raw tensor bytes. No pickle: a bucket's object is input, and the header is
checked before any byte becomes a tensor.

Saving never stalls the GPU: the step hook starts a device-to-host copy on a
side stream and returns; the wait for that copy, the checksum and the upload
run on the event loop and worker threads beside the next steps, at most one
upload per job at a time (a due checkpoint is skipped while the last one
uploads; the hand-over's and the end of denoising's wait for it instead)."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import threading
import time
from datetime import datetime
from typing import Any

import msgspec
import structlog
import torch
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore

from mochi_common.jetstream_setup import ensure_checkpoint_bucket, open_checkpoint_bucket
from mochi_contracts.events import utcnow
from mochi_contracts.jobs import JobRequest
from mochi_contracts.streams import CHECKPOINT_BUCKET, JetStreamSettings
from mochi_runner import metrics

log = structlog.get_logger()

FORMAT = 1
MAGIC = b"MOCHICKP"
_LENGTH = struct.Struct(">I")
MAX_HEADER = 64 * 1024
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CheckpointHeader(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: int
    job_id: str
    step: int  # denoising steps done
    total_steps: int
    shape: list[int]
    dtype: str
    sha256: str  # of the tensor bytes
    request_digest: str
    model_digest: str
    config: dict[str, str]  # engine.MochiEngine.render_config of the render that saved it
    runner: str
    attempt: int
    saved_at: datetime


class RejectedCheckpoint(Exception):
    """A checkpoint that must not be resumed from; `reason` is a metric label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def request_digest(job_id: str, req: JobRequest) -> str:
    """The job and what decides its latents (not fps, webhooks, deadline, priority)."""
    decides = (job_id, req.prompt, req.negative_prompt, req.width, req.height, req.num_frames,
               req.num_inference_steps, req.guidance_scale, req.seed or 0)
    return hashlib.sha256(msgspec.json.encode(decides)).hexdigest()


def tensor_bytes(latents: torch.Tensor) -> bytes:
    return latents.contiguous().view(torch.uint8).numpy().tobytes()


def encode(header: CheckpointHeader, data: bytes) -> bytes:
    head = msgspec.json.encode(header)
    return MAGIC + _LENGTH.pack(len(head)) + head + data


def _header(blob: bytes) -> tuple[CheckpointHeader, memoryview]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _LENGTH.size:
        raise RejectedCheckpoint("unreadable", "not a Mochi checkpoint")
    (length,) = _LENGTH.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _LENGTH.size
    if length > MAX_HEADER or start + length > len(blob):
        raise RejectedCheckpoint("unreadable", f"a header of {length} bytes")
    try:
        header = msgspec.json.decode(blob[start:start + length], type=CheckpointHeader)
    except msgspec.ValidationError as err:
        raise RejectedCheckpoint("unreadable", f"its header: {err}") from None
    return header, memoryview(blob)[start + length:]


def verify(blob: bytes, *, job_id: str, req: JobRequest, model_digest: str,
           shape: tuple[int, ...]) -> tuple[CheckpointHeader, torch.Tensor]:
    """The checkpoint's header and latents, or RejectedCheckpoint saying why not."""
    header, data = _header(blob)
    if header.format != FORMAT:
        raise RejectedCheckpoint("unreadable", f"format {header.format}, this runner reads {FORMAT}")
    if header.job_id != job_id:
        raise RejectedCheckpoint("another_job", f"it is job {header.job_id}'s")
    if header.request_digest != request_digest(job_id, req):
        raise RejectedCheckpoint("another_request", "it was made from another request")
    if header.model_digest != model_digest:
        raise RejectedCheckpoint("another_model", "it was made with other weights")
    if tuple(header.shape) != tuple(shape) or header.dtype not in DTYPES:
        raise RejectedCheckpoint("shape", f"latents {header.dtype}{header.shape}, this job's are {list(shape)}")
    if not 1 <= header.step <= req.num_inference_steps or header.total_steps != req.num_inference_steps:
        raise RejectedCheckpoint("step", f"step {header.step} of {header.total_steps}")
    dtype = DTYPES[header.dtype]
    size = dtype.itemsize
    for n in shape:
        size *= n
    if len(data) != size:
        raise RejectedCheckpoint("checksum", f"{len(data)} bytes of latents, {size} expected")
    if hashlib.sha256(data).hexdigest() != header.sha256:
        raise RejectedCheckpoint("checksum", "its latents do not match their checksum")
    latents = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
    return header, latents


class HostCopy:
    """Latents on their way to host memory. On a GPU the copy runs on a side
    stream into pinned memory: the step hook returns at once, and the next
    step's kernels queue behind nothing of it (record_stream keeps the
    caching allocator from handing the source to the next step before the
    copy has read it). `wait()` is for another thread."""

    def __init__(self, latents: torch.Tensor):
        if latents.device.type == "cuda":
            side = torch.cuda.Stream(latents.device)
            side.wait_stream(torch.cuda.current_stream(latents.device))
            with torch.cuda.stream(side):
                self._host = torch.empty(latents.shape, dtype=latents.dtype, pin_memory=True)
                self._host.copy_(latents, non_blocking=True)
                latents.record_stream(side)
                self._done: torch.cuda.Event | None = side.record_event()
        else:
            # The pipeline hands the same tensor to the next step, which makes
            # a new one rather than writing into it; a copy keeps it anyway.
            self._host = latents.detach().clone()
            self._done = None

    def wait(self) -> torch.Tensor:
        if self._done is not None:
            self._done.synchronize()
        return self._host


class CheckpointStore:
    """The bucket, as far as the runner cares: save, load and delete one job's
    checkpoint. The bucket away (deleted, its stream without a leader, NATS
    unreachable past the timeout) is a warning and a metric, never a job's
    failure: jobs then render without checkpoints."""

    def __init__(self, js: JetStreamContext, cfg: JetStreamSettings, timeout_s: float = 30.0):
        self.js = js
        self.cfg = cfg
        self.timeout_s = timeout_s
        self._bucket: ObjectStore | None = None

    async def open(self, patience_s: float = 10.0) -> bool:
        """At start-up: create the bucket if absent. False (with a warning) if it cannot be."""
        try:
            self._bucket = await asyncio.wait_for(ensure_checkpoint_bucket(self.js, self.cfg, patience_s),
                                                  patience_s + self.timeout_s)
            return True
        except Exception as err:
            self._away("open", err)
            return False

    async def _get_bucket(self, operation: str) -> ObjectStore | None:
        if self._bucket is None:
            # Looked up again, never made again mid-run: a bucket an operator
            # deleted stays away until a runner starts (and creates it).
            try:
                self._bucket = await asyncio.wait_for(open_checkpoint_bucket(self.js), self.timeout_s)
            except Exception as err:
                self._away(operation, err)
                return None
        return self._bucket

    def _away(self, operation: str, err: BaseException) -> None:
        self._bucket = None
        metrics.CHECKPOINT_STORE_UNAVAILABLE.labels(operation=operation).inc()
        log.warning("checkpoint.store_unavailable", operation=operation, bucket=CHECKPOINT_BUCKET,
                    error=repr(err), effect="jobs render without checkpoints")

    async def save(self, job_id: str, blob: bytes) -> bool:
        bucket = await self._get_bucket("save")
        if bucket is None:
            return False
        try:
            await asyncio.wait_for(bucket.put(job_id, blob), self.timeout_s)
            return True
        except Exception as err:
            self._away("save", err)
            return False

    async def load(self, job_id: str) -> bytes | None:
        """The job's checkpoint, or None: none saved, or the store away."""
        bucket = await self._get_bucket("load")
        if bucket is None:
            return None
        try:
            return (await asyncio.wait_for(bucket.get(job_id), self.timeout_s)).data
        except ObjectNotFoundError:
            return None
        except Exception as err:
            self._away("load", err)
            return None

    async def delete(self, job_id: str) -> None:
        bucket = await self._get_bucket("delete")
        if bucket is None:
            return
        try:
            await asyncio.wait_for(bucket.delete(job_id), self.timeout_s)
        except ObjectNotFoundError:
            pass
        except Exception as err:
            self._away("delete", err)


class JobCheckpoints:
    """One attempt's checkpoints. `offer` runs in the render thread, inside
    the step hook; the upload runs on the event loop."""

    def __init__(self, store: CheckpointStore, loop: asyncio.AbstractEventLoop, *, job_id: str,
                 req: JobRequest, model_digest: str, config: dict[str, str], runner: str, attempt: int):
        self.store = store
        self.loop = loop
        self.job_id = job_id
        self.total = req.num_inference_steps
        self._fields: dict[str, Any] = dict(format=FORMAT, job_id=job_id, total_steps=req.num_inference_steps,
                                            request_digest=request_digest(job_id, req), model_digest=model_digest,
                                            config=config, runner=runner, attempt=attempt)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last: asyncio.Task[None] | None = None
        self.saved_step: int | None = None  # the newest step this attempt stored
        self.log = log.bind(job_id=job_id, attempt=attempt)

    def offer(self, step: int, latents: torch.Tensor, must: bool) -> bool:
        """Save the latents after `step`. A due checkpoint (`must` False) is
        skipped while this job's previous one still uploads; a must (hand-over,
        end of denoising) queues behind it."""
        with self._lock:
            if self._in_flight and not must:
                metrics.CHECKPOINTS.labels(outcome="skipped_busy").inc()
                return False
            self._in_flight += 1
        try:
            copy = HostCopy(latents)
        except BaseException:
            with self._lock:
                self._in_flight -= 1
            raise
        self.loop.call_soon_threadsafe(self._queue, step, copy, time.perf_counter())
        return True

    def _queue(self, step: int, copy: HostCopy, offered: float) -> None:
        self._last = self.loop.create_task(self._upload(self._last, step, copy, offered))

    async def _upload(self, previous: asyncio.Task[None] | None, step: int, copy: HostCopy, offered: float) -> None:
        try:
            if previous is not None:
                await asyncio.wait({previous})  # it never raises: its errors end in its own log line
            latents = await asyncio.to_thread(copy.wait)
            blob = await asyncio.to_thread(self._encode, step, latents)
            if await self.store.save(self.job_id, blob):
                self.saved_step = max(step, self.saved_step or 0)
                seconds = time.perf_counter() - offered
                metrics.CHECKPOINTS.labels(outcome="saved").inc()
                metrics.CHECKPOINT_UPLOAD_SECONDS.observe(seconds)
                self.log.info("checkpoint.saved", step=step, bytes=len(blob), seconds=round(seconds, 3))
            else:
                metrics.CHECKPOINTS.labels(outcome="failed").inc()
        except Exception as err:  # a checkpoint never fails its job
            metrics.CHECKPOINTS.labels(outcome="failed").inc()
            self.log.warning("checkpoint.not_saved", step=step, error=repr(err))
        finally:
            with self._lock:
                self._in_flight -= 1

    def _encode(self, step: int, latents: torch.Tensor) -> bytes:
        data = tensor_bytes(latents)
        dtype = next(name for name, t in DTYPES.items() if t == latents.dtype)
        header = CheckpointHeader(step=step, shape=list(latents.shape), dtype=dtype,
                                  sha256=hashlib.sha256(data).hexdigest(), saved_at=utcnow(), **self._fields)
        return encode(header, data)

    async def settle(self, timeout_s: float) -> int | None:
        """Wait (at most timeout_s) for the uploads offered so far; the newest saved step."""
        if self._last is not None:
            await asyncio.wait({self._last}, timeout=timeout_s)
        return self.saved_step

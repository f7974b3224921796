"""One delivery of one submitted job, from pull to ack.

Order matters for the guarantees:
  1. subscribe to the job's cancel and final subjects, then check the stream,
     so a cancel between check and subscribe is never missed;
  2. skip work already done (final event exists, or the video is stored);
  3. wait for GPU lanes, render on them and give them back at once, so the
     next job denoises while this one encodes and uploads; `in_progress`
     heartbeats well inside the ack wait run from pull to ack;
  4. store the video (never overwriting), then publish the one final event,
     then ack: a crash anywhere before the ack means redelivery, and steps 2
     and 4 make the redelivery cheap and harmless."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from mochi_common.nats_conn import PatientJetStream, last_event, publish_event, publish_final
from mochi_common.storage import TransientStoreError, VideoStore
from mochi_common.storage.retry import RetryPolicy, call_with_retries
from mochi_contracts import subjects
from mochi_contracts.events import (
    JobCancelled, JobCompleted, JobExpired, JobFailed, JobLog, JobProgress, JobStarted, JobSubmitted,
    VideoInfo, utcnow)
from mochi_contracts.event_codec import UnreadableEvent, decode_event
from mochi_contracts.storage import VIDEO_CONTENT_TYPE, video_key
from mochi_runner import metrics
from mochi_runner.engine import MochiEngine
from mochi_runner.gpu_slots import GpuSlots, Ticket
from mochi_runner.job_control import JobControl, RenderStopped
from mochi_runner.video_encode import DEFAULT_PRESET, encode_mp4

log = structlog.get_logger()

# Past this NATS counts as down: the attempt fails and JetStream redelivers it.
PUBLISH_PATIENCE_S = 60.0


def _is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError)


class JobHandler:
    """Runs the jobs the service loop pulls, several at once: each holds its GPU
    lanes (gpu_slots.py) only while it denoises and decodes, so one job's MP4
    encode and upload overlap the next job's denoising."""

    def __init__(self, nc: Client, engine: MochiEngine, store: VideoStore, runner_id: str,
                 ack_wait_s: float, max_deliver: int, slots: GpuSlots,
                 store_retry: RetryPolicy = RetryPolicy(), max_run_s: float = 0.0,
                 mp4_preset: str = DEFAULT_PRESET):
        self.nc = nc
        # A stream leader election takes seconds; the job's events wait it out.
        self.js = PatientJetStream(nc.jetstream(), PUBLISH_PATIENCE_S)
        self.engine = engine
        self.store = store
        self.runner_id = runner_id
        self.heartbeat_s = max(ack_wait_s / 4.0, 0.25)
        self.max_deliver = max_deliver
        self.slots = slots
        self.store_retry = store_retry
        self.controls: set[JobControl] = set()  # the jobs this runner holds now
        # Job id -> set when this runner's attempt at it ends (see handle_duplicate).
        self.local: dict[str, asyncio.Event] = {}
        self.max_run_s = max_run_s
        self.mp4_preset = mp4_preset
        self.jobs_started = 0

    async def job_log(self, job_id: str, level: str, message: str) -> None:
        """One line in the job's own log (GET /v1/jobs/{id}/logs, its SSE stream);
        never fails the job."""
        try:
            await publish_event(self.js, JobLog(job_id=job_id, level=level, message=message,  # type: ignore[arg-type]
                                                runner=self.runner_id),
                                dedupe=f"{job_id}:log:{uuid.uuid4().hex}")
        except Exception as err:
            log.warning("job.log_not_published", job_id=job_id, error=repr(err))

    def shutdown(self) -> None:
        """Renders stop after their current step and hand their jobs back; jobs
        past their render finish their encode and upload."""
        for control in self.controls:
            control.stop(JobControl.SHUTDOWN)

    async def accept(self, msg: Msg) -> JobSubmitted | None:
        """The pulled message's submission, or None once an unreadable one is termed."""
        try:
            event = decode_event(msg.data, dict(msg.headers or {}), msg.subject)
        except UnreadableEvent as err:
            log.error("job.unreadable", subject=msg.subject, error=str(err))
            await msg.term()
            return None
        if not isinstance(event, JobSubmitted):
            log.error("job.not_a_submission", subject=msg.subject)
            await msg.term()
            return None
        return event

    def working_on(self, job_id: str) -> bool:
        return job_id in self.local

    async def handle_duplicate(self, msg: Msg, event: JobSubmitted) -> None:
        """A new delivery of a job this runner still works on: its ack wait ran
        out (NATS was away and the heartbeats with it), and now that a lane is
        free the runner pulled it again while the first attempt uploads. Rendering
        it again would waste the GPUs and publish a second attempt's events after
        the first one's final event. So: wait for the local attempt, then ack if
        that ended the job, else hand this delivery back for a normal attempt."""
        bound = log.bind(job_id=event.job_id, attempt=msg.metadata.num_delivered)
        ended = self.local[event.job_id]
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            await ended.wait()
            if await last_event(self.js, subjects.job_final(event.job_id), consistent=True) is not None:
                bound.info("job.duplicate_delivery_acked")
                await msg.ack()
            else:
                bound.info("job.duplicate_delivery_handed_back")
                await msg.nak(delay=1.0)
        except Exception as err:
            # NATS away again: JetStream redelivers after the ack wait, and the
            # normal path then sorts it out.
            bound.warning("job.duplicate_delivery_unresolved", error=repr(err))
        finally:
            heartbeat.cancel()

    def wants_every_lane(self, event: JobSubmitted) -> bool:
        """A guided job uses every GPU; a guidance-free one a lane of its own."""
        return not self.engine.lanes or event.request.guidance_scale > 1.0

    async def handle(self, msg: Msg, event: JobSubmitted, ticket: Ticket) -> None:
        # Before any await: the loop must see this job as ours from now on.
        self.local[event.job_id] = asyncio.Event()
        try:
            await self._delivery(msg, event, ticket)
        finally:
            self.local.pop(event.job_id).set()

    async def _delivery(self, msg: Msg, event: JobSubmitted, ticket: Ticket) -> None:
        attempt = msg.metadata.num_delivered
        bound = log.bind(job_id=event.job_id, attempt=attempt)
        control = JobControl()

        async def on_cancel(_msg: Msg) -> None:
            control.stop(JobControl.CANCELLED)

        async def on_final(_msg: Msg) -> None:
            control.stop(JobControl.FINISHED_ELSEWHERE)

        subs = [
            await self.nc.subscribe(subjects.event_subject(event.job_id, "cancel_requested"), cb=on_cancel),
            await self.nc.subscribe(subjects.job_final(event.job_id), cb=on_final),
        ]
        self.controls.add(control)
        # From pull to ack: waiting for a lane and the upload count too.
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            await self._handle(msg, event, attempt, control, ticket, bound)
        except Exception as err:
            # Anything this job raised (render, encode, store) fails this
            # attempt only; the runner carries on with the next job.
            await self._failed(msg, event.job_id, attempt, err, bound)
        finally:
            heartbeat.cancel()
            self.slots.release(ticket)  # a no-op if the render already gave its lanes back
            self.controls.discard(control)
            for sub in subs:
                await sub.unsubscribe()

    async def _handle(self, msg: Msg, event: JobSubmitted, attempt: int, control: JobControl,
                      ticket: Ticket, bound: structlog.stdlib.BoundLogger) -> None:
        job_id, req = event.job_id, event.request
        if await last_event(self.js, subjects.job_final(job_id), consistent=True) is not None:
            bound.info("job.already_final")
            await msg.ack()
            return
        if await last_event(self.js, subjects.event_subject(job_id, "cancel_requested")):
            await publish_final(self.js, JobCancelled(job_id=job_id, reason="cancelled before it started"))
            metrics.finished("cancelled")
            bound.info("job.cancelled_before_start")
            await msg.ack()
            return
        if req.deadline is not None and utcnow() >= req.deadline:
            # Not started by its deadline: it ends without touching a GPU.
            await publish_final(self.js, JobExpired(
                job_id=job_id, reason=f"not started by its deadline {req.deadline.isoformat()}"))
            bound.info("job.expired_before_start")
            await msg.ack()
            return
        key = video_key(job_id)
        try:
            size = await asyncio.to_thread(self.store.size, key)
        except TransientStoreError as err:
            # This check only saves a render that an earlier delivery already
            # stored. With the store away, render anyway rather than hold the
            # GPUs: the upload never overwrites and waits out the outage.
            bound.warning("job.store_check_skipped", error=str(err))
            size = None
        if size is not None:
            # A runner stored the video and died before its final event.
            await self._complete(event, attempt, size)
            bound.info("job.video_already_stored", bytes=size)
            await msg.ack()
            return

        try:
            await ticket.wait(control)
        except RenderStopped as stop:
            await self._stopped(msg, job_id, stop, bound)
            return
        await publish_event(self.js, JobStarted(job_id=job_id, runner=self.runner_id, attempt=attempt),
                            dedupe=f"{job_id}:started:{attempt}")
        bound.info("job.started", steps=req.num_inference_steps, size=f"{req.width}x{req.height}",
                   frames=req.num_frames, lanes=list(ticket.lanes))
        self.jobs_started += 1
        devices = self.engine.devices if ticket.lane is None else [self.engine.devices[ticket.lane]]
        warm = ("first job since start-up" if self.jobs_started == 1
                else f"warm, {self.jobs_started - 1} jobs before this one")
        await self.job_log(job_id, "info", f"started on {self.runner_id} (attempt {attempt}); model "
                                           f"resident, rendering on {', '.join(map(str, devices))}, {warm}")
        if attempt > 1:
            await self.job_log(job_id, "warning", f"attempt {attempt}: an earlier attempt did not finish")
        timer = (asyncio.get_running_loop().call_later(self.max_run_s, control.stop, JobControl.TIMED_OUT)
                 if self.max_run_s > 0 else None)
        started = time.perf_counter()
        clock = metrics.StepClock()
        progress: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
        publisher = asyncio.create_task(self._publish_progress(job_id, attempt, progress, control))
        loop = asyncio.get_running_loop()

        def on_step(step: int, total: int) -> None:  # runs in the render thread
            loop.call_soon_threadsafe(progress.put_nowait, (step, total))
            clock.tick()
            control.check(step)

        def render() -> np.ndarray:  # in a worker thread, on the ticket's lanes
            if ticket.idle_since is not None:
                idle = time.perf_counter() - ticket.idle_since
                metrics.GPU_IDLE_SECONDS.observe(idle)
                bound.info("job.gpu_idle_before", seconds=round(idle, 3), lanes=list(ticket.lanes))
            return self.engine.decode(self.engine.denoise(req, on_step, lane=ticket.lane), lane=ticket.lane)

        metrics.BUSY.inc()
        try:
            try:
                frames = await asyncio.to_thread(render)
                clock.observe_render()
            finally:
                metrics.BUSY.dec()
                # The GPUs go to the next job now; the encode and upload below
                # run on the CPU beside its denoising.
                self.slots.release(ticket)
                if timer is not None:
                    timer.cancel()
                progress.put_nowait(None)
                await publisher
        except RenderStopped as stop:
            await self._stopped(msg, job_id, stop, bound)
            return
        bound.info("job.rendered", seconds=round(time.perf_counter() - started, 2))
        with tempfile.TemporaryDirectory(prefix="mochi-") as tmp:
            path = Path(tmp) / "video.mp4"
            await asyncio.to_thread(encode_mp4, frames, req.fps, path, preset=self.mp4_preset)
            del frames
            size = await self._store_video(job_id, key, path)
            metrics.observe_job_since(event.time)
        seconds = time.perf_counter() - started
        await self.job_log(job_id, "info", f"rendered {req.num_inference_steps} steps and stored "
                                           f"{size} bytes in {seconds:.1f}s")
        await self._complete(event, attempt, size)
        await msg.ack()
        bound.info("job.completed", seconds=round(seconds, 2), bytes=size)

    async def _store_video(self, job_id: str, key: str, path: Path) -> int:
        """Upload without overwriting, riding out the store's short outages, then
        confirm the object exists: the completed event promises a download."""
        async def warn(text: str) -> None:
            await self.job_log(job_id, "warning", text)

        stored = await call_with_retries(lambda: self.store.put_new(key, path, VIDEO_CONTENT_TYPE),
                                         self.store_retry, "put_new", on_retry=warn, job_id=job_id)
        size = await call_with_retries(lambda: self.store.size(key), self.store_retry, "size",
                                       on_retry=warn, job_id=job_id)
        if size is None:
            raise RuntimeError(f"the store has no {key} right after storing it")
        if not stored:
            # Another delivery of this job stored the same (same seed) video first.
            log.info("job.video_stored_by_another_delivery", job_id=job_id, bytes=size)
        return size

    async def _complete(self, event: JobSubmitted, attempt: int, size: int) -> None:
        req = event.request
        video = VideoInfo(key=video_key(event.job_id), size_bytes=size, width=req.width,
                          height=req.height, num_frames=req.num_frames, fps=req.fps)
        await publish_final(self.js, JobCompleted(
            job_id=event.job_id, video=video, runner=self.runner_id, attempt=attempt))
        metrics.finished("completed")

    async def _stopped(self, msg: Msg, job_id: str, stop: RenderStopped,
                       bound: structlog.stdlib.BoundLogger) -> None:
        if stop.reason == JobControl.SHUTDOWN:
            # Hand the job back at once rather than after the ack wait.
            await msg.nak()
            metrics.finished("handed_back")
            bound.info("job.handed_back", step=stop.step)
        elif stop.reason == JobControl.TIMED_OUT:
            reason = f"ran past the maximum run time of {self.max_run_s:g}s (stopped at step {stop.step})"
            await self.job_log(job_id, "error", reason)
            await publish_final(self.js, JobFailed(job_id=job_id, reason=reason,
                                                   attempts=msg.metadata.num_delivered))
            metrics.finished("failed")
            await msg.term()
            bound.info("job.timed_out", step=stop.step)
        elif stop.reason == JobControl.CANCELLED:
            reason = f"cancelled at step {stop.step}" if stop.step else "cancelled before it started"
            await publish_final(self.js, JobCancelled(job_id=job_id, reason=reason))
            metrics.finished("cancelled")
            await msg.ack()
            bound.info("job.cancelled", step=stop.step)
        else:
            await msg.ack()
            bound.info("job.finished_elsewhere", step=stop.step)

    async def _failed(self, msg: Msg, job_id: str, attempt: int, err: Exception,
                      bound: structlog.stdlib.BoundLogger) -> None:
        reason = f"{type(err).__name__}: {err}"
        if _is_oom(err):
            # Another try on the same GPU would run out of memory again.
            import torch

            torch.cuda.empty_cache()
            reason = f"out of GPU memory at {reason}; try fewer frames or a smaller size"
        final = _is_oom(err) or attempt >= self.max_deliver
        bound.error("job.attempt_failed", reason=reason, final=final, exc_info=err)
        await self.job_log(job_id, "error", f"attempt {attempt} failed: {reason}"
                                            + ("" if final else "; it will be retried"))
        metrics.finished("failed" if final else "retried")
        if final:
            await publish_final(self.js, JobFailed(job_id=job_id, reason=reason, attempts=attempt))
            await msg.term()
        else:
            await msg.nak(delay=min(2.0 ** attempt, 30.0))

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await msg.in_progress()
            except Exception as err:  # NATS may be reconnecting; the next beat may land
                log.warning("job.heartbeat_failed", error=repr(err))

    async def _publish_progress(self, job_id: str, attempt: int,
                                queue: asyncio.Queue[tuple[int, int] | None], control: JobControl) -> None:
        while (item := await queue.get()) is not None:
            if control.reason == JobControl.FINISHED_ELSEWHERE:
                continue  # the job has its final event: nothing may follow it on its stream
            step, total = item
            await publish_event(
                self.js, JobProgress(job_id=job_id, step=step, total_steps=total, runner=self.runner_id),
                dedupe=f"{job_id}:progress:{attempt}:{step}")

"""One delivery of one submitted job, from pull to its end (ack, nak or term).

A delivery goes through three phases, each a method below:
  1. `_settle_without_rendering`: a job that is already final, cancelled,
     past its deadline or whose video is stored ends here, touching no GPU;
  2. `_render`: wait for GPU lanes (the deadline is checked again once they
     are granted), denoise and decode on them, give them back at once so the
     next job denoises while this one encodes; a watchdog fails the job when
     the work runs past the maximum run time and does not stop;
  3. `_store_and_complete`: store the video (never overwriting), publish the
     one final event, then ack: a crash anywhere before the ack means
     redelivery, and phase 1 makes the redelivery cheap and harmless.
Every way out goes through `_end`, which publishes the final event (if any),
counts the outcome only when that event was published, logs, and returns
what the consumer runtime (mochi_common.consumer) does with the message.
Subscriptions to the job's cancel and final subjects are made before phase 1
reads the stream, so a cancel between the check and the subscribe is never
missed.

Checkpoints (checkpoints.py, issue 20): phase 2 saves the latents every
`checkpoint_every_steps` steps, after the step in flight at a hand-over
(SIGTERM), and once denoising ends, beside the next steps; a delivery that
finds a checkpoint it can verify starts after its step (with denoising
finished, it only decodes, encodes and stores). `_end` deletes the job's
checkpoint: the job is final there.

Phases and previews (issue 24): the render reports what it is doing as phase
events (encoding_prompt; denoising once the engine has encoded the prompt, or
with the stock pipeline, which encodes inside its call, once the first step
ends; decoding; encoding_video; storing), and while it denoises a live
preview at most every `preview_every_s` seconds (previews.py), stored in the
previews bucket and told of by a preview event. The render's events go out in
order through one publisher task; `_end` deletes the job's previews."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import structlog
import torch
from nats.aio.client import Client
from nats.aio.msg import Msg

from mochi_common.consumer import ACK, Heartbeat, Nak, Outcome, Term
from mochi_common.event_intake import read_event
from mochi_common.nats_conn import PatientJetStream, last_event, publish_event, publish_final
from mochi_common.storage import TransientStoreError, VideoStore
from mochi_common.storage.retry import RetryPolicy, call_with_retries
from mochi_contracts import subjects
from mochi_contracts.event_codec import UnreadableEvent, decode_event
from mochi_contracts.events import (
    JobCancelled, JobCancelRequested, JobCompleted, JobEvent, JobExpired, JobFailed, JobLog, JobPhase, JobPreview,
    JobProgress, JobStarted, JobSubmitted, RunnerPhase, VideoInfo, clip, event_type, utcnow)
from mochi_contracts.storage import VIDEO_CONTENT_TYPE, video_key
from mochi_runner import metrics
from mochi_runner.checkpoints import CheckpointStore, JobCheckpoints, RejectedCheckpoint, verify
from mochi_runner.engine import MochiEngine
from mochi_runner.gpu_slots import GpuSlots, Ticket
from mochi_runner.job_control import JobControl, RenderStopped
from mochi_runner.previews import JobPreviews, PreviewStore, schedule
from mochi_runner.resume_schedule import Resume
from mochi_runner.settings import RunnerSettings
from mochi_runner.thumbnails import store_missing_thumbnails, store_thumbnails
from mochi_runner.video_encode import encode_mp4
from mochi_runner.watchdog import WorkHung, watched

log = structlog.get_logger()
T = TypeVar("T")

# How long the end of a render waits for its preview in flight (encode, upload).
PREVIEW_SETTLE_S = 10.0
LogLevel = Literal["debug", "info", "warning", "error"]


def _is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError)


class Attempt:
    """What one delivery knows about itself while it runs."""

    def __init__(self, msg: Msg, event: JobSubmitted):
        self.msg = msg
        self.event = event
        self.job_id = event.job_id
        self.number = msg.metadata.num_delivered
        self.control = JobControl()
        self.log = log.bind(job_id=event.job_id, attempt=self.number)
        # When the render last moved (a step, or a phase began); the runner's
        # liveness fails when a render stands still too long.
        self.moved_at = time.monotonic()
        self.started = time.perf_counter()  # reset once the GPU lanes are granted
        self.heartbeat: Heartbeat | None = None
        # The watchdog gave up on its work, whose thread still holds the lanes.
        self.hung = False
        self.checkpoints: JobCheckpoints | None = None
        self.from_step = 0  # the step this attempt resumed after (0: from the start)

    def past_deadline(self) -> bool:
        deadline = self.event.request.deadline
        return deadline is not None and utcnow() >= deadline


class JobHandler:
    """Runs the jobs the consumer runtime hands it, several at once: each holds
    its GPU lanes (gpu_slots.py) only while it denoises and decodes."""

    def __init__(self, settings: RunnerSettings, nc: Client, engine: MochiEngine, store: VideoStore,
                 slots: GpuSlots, checkpoints: CheckpointStore | None = None):
        self.settings = settings
        self.nc = nc
        # A stream leader election takes seconds; the job's events wait it out.
        self.js = PatientJetStream(nc.jetstream(), settings.publish_patience_s)
        self.engine = engine
        self.store = store
        self.slots = slots
        self.runner_id = settings.runner_id
        self.heartbeat_s = max(settings.ack_wait_s / 4.0, 0.25)
        self.store_retry = RetryPolicy(attempts=settings.store_retry_attempts,
                                       first_delay_s=settings.store_retry_first_delay_s,
                                       max_delay_s=settings.store_retry_max_delay_s)
        self.attempts: set[Attempt] = set()  # the jobs this runner holds now
        # Job id -> set when this runner's attempt at it ends (see _duplicate).
        self.local: dict[str, asyncio.Event] = {}
        # Renders the watchdog gave up on whose thread still runs (holding lanes).
        self.hung: set[str] = set()
        self.jobs_started = 0
        # None: this runner neither saves nor resumes renders.
        self.checkpoints = checkpoints
        self.decodes = 0  # for fault_injection_decode_oom
        # None: this runner makes no live previews (MOCHI_PREVIEW_EVERY_S=0).
        self.previews = (PreviewStore(nc.jetstream(), settings.jetstream())
                         if settings.preview_every_s > 0 else None)

    # ---- what the service asks ------------------------------------------------

    def shutdown(self) -> None:
        """Renders stop after their current step and hand their jobs back; jobs
        past their render finish their encode and upload."""
        for attempt in self.attempts:
            attempt.control.stop(JobControl.SHUTDOWN)

    def stalled(self) -> list[str]:
        """Why this runner is not alive: a render that made no step (nor began a
        phase) for `step_stall_s`, or a render the watchdog gave up on."""
        now, limit = time.monotonic(), self.settings.step_stall_s
        reasons = [f"job {a.job_id} made no step for {now - a.moved_at:.0f}s" for a in self.attempts
                   if limit > 0 and now - a.moved_at > limit]
        return reasons + [f"job {job_id}: its render hung past the maximum run time" for job_id in self.hung]

    async def handle(self, msg: Msg) -> Outcome:
        """The consumer runtime's handler. Everything before the first await runs
        before the runtime pulls again: the job claims its GPU ticket there."""
        try:
            event = decode_event(msg.data, msg.headers, msg.subject)
        except UnreadableEvent as err:
            return Term(f"unreadable submission: {err}")
        if not isinstance(event, JobSubmitted):
            return Term("not a submission")  # the consumer's filter makes this a foreign publisher's
        ended = self.local.get(event.job_id)
        if ended is not None:
            # A redelivery of a job still uploading here: it needs no GPU.
            return await self._duplicate(msg, event, ended)
        try:
            ticket = self.slots.ticket(whole=self.wants_every_lane(event))
        except RuntimeError:
            return Nak()  # shutting down: another runner takes it at once
        self.local[event.job_id] = asyncio.Event()
        try:
            return await self._attempt(Attempt(msg, event), ticket)
        finally:
            self.local.pop(event.job_id).set()

    def wants_every_lane(self, event: JobSubmitted) -> bool:
        """A guided job uses every GPU; a guidance-free one a lane of its own."""
        return not self.engine.lanes or event.request.guidance_scale > 1.0

    # ---- one delivery -----------------------------------------------------------

    async def _attempt(self, attempt: Attempt, ticket: Ticket) -> Outcome:
        control, job_id = attempt.control, attempt.job_id

        # What is heard about the job is read at the one boundary too: bytes on its
        # cancel or final subjects that are no such event of this job stop nothing
        # (refused, counted and logged by read_event).
        async def on_cancel(msg: Msg) -> None:
            if isinstance(read_event("runner-cancel", msg.subject, msg.data, msg.headers), JobCancelRequested):
                control.stop(JobControl.CANCELLED)

        async def on_final(msg: Msg) -> None:
            if read_event("runner-final", msg.subject, msg.data, msg.headers) is not None:
                control.stop(JobControl.FINISHED_ELSEWHERE)

        subs = [await self.nc.subscribe(subjects.event_subject(job_id, "cancel_requested"), cb=on_cancel),
                await self.nc.subscribe(subjects.job_final(job_id), cb=on_final)]
        self.attempts.add(attempt)
        # From pull to the end: waiting for a lane and the upload count too.
        attempt.heartbeat = Heartbeat(attempt.msg, self.heartbeat_s)
        try:
            settled = await self._settle_without_rendering(attempt)
            if settled is not None:
                return settled
            frames = await self._render(attempt, ticket)
            return await self._store_and_complete(attempt, frames)
        except RenderStopped as stop:
            return await self._stopped(attempt, stop)
        except WorkHung as hung:
            return await self._end(attempt, JobFailed(job_id=job_id, reason=clip(str(hung)), attempts=attempt.number),
                                   Term(str(hung)), "failed", "job.hung")
        except Exception as err:
            # Anything this job raised (render, encode, store) fails this
            # attempt only; the runner carries on with the next job.
            return await self._failed(attempt, err)
        finally:
            attempt.heartbeat.stop()
            if not attempt.hung:  # a hung render's thread gives its lanes back when it returns
                self.slots.release(ticket)  # a no-op if the render already gave its lanes back
            self.attempts.discard(attempt)
            for sub in subs:
                try:
                    await sub.unsubscribe()
                except Exception as err:  # the connection may be away; the subscription goes with it
                    attempt.log.warning("job.unsubscribe_failed", error=repr(err))

    async def _settle_without_rendering(self, attempt: Attempt) -> Outcome | None:
        job_id = attempt.job_id
        if await last_event(self.js, subjects.job_final(job_id), consistent=True) is not None:
            return await self._end(attempt, None, ACK, None, "job.already_final")
        if await last_event(self.js, subjects.event_subject(job_id, "cancel_requested")):
            return await self._end(attempt, JobCancelled(job_id=job_id, reason="cancelled before it started"),
                                   ACK, "cancelled", "job.cancelled_before_start")
        if attempt.past_deadline():
            return await self._end(attempt, JobExpired(job_id=job_id, reason=self._deadline_reason(attempt)),
                                   ACK, None, "job.expired_before_start")
        try:
            size = await asyncio.to_thread(self.store.size, video_key(job_id))
        except TransientStoreError as err:
            # This check only saves a render that an earlier delivery already
            # stored. With the store away, render anyway rather than hold the
            # GPUs: the upload never overwrites and waits out the outage.
            attempt.log.warning("job.store_check_skipped", error=str(err))
            size = None
        if size is not None:
            # A runner stored the video and died before its final event (and
            # perhaps before its thumbnails: made from the stored video then).
            await store_missing_thumbnails(self.store, job_id, retry=self.store_retry, log=attempt.log)
            return await self._end(attempt, self._completed(attempt, size), ACK, "completed",
                                   "job.video_already_stored", bytes=size)
        return None

    @staticmethod
    def _deadline_reason(attempt: Attempt) -> str:
        deadline = attempt.event.request.deadline
        return f"not started by its deadline {deadline.isoformat() if deadline else ''}"

    async def _render(self, attempt: Attempt, ticket: Ticket) -> np.ndarray:
        job_id, req, control = attempt.job_id, attempt.event.request, attempt.control
        # Read while the job waits for its lanes, not while they idle.
        found = await self._checkpoint_found(attempt)
        await ticket.wait(control)
        # The wait for a lane can be long: the deadline is checked again now.
        if attempt.past_deadline():
            raise RenderStopped(JobControl.EXPIRED, 0)
        resume = await self._resume_point(attempt, found, ticket.lane)
        loop = asyncio.get_running_loop()
        if self.checkpoints is not None:
            attempt.checkpoints = JobCheckpoints(
                self.checkpoints, loop, job_id=job_id, req=req, model_digest=self.engine.model_digest(),
                config=self.engine.render_config(ticket.lane), runner=self.runner_id, attempt=attempt.number)
        attempt.from_step = resume.step if resume is not None else 0
        await publish_event(self.js, JobStarted(job_id=job_id, runner=self.runner_id, attempt=attempt.number,
                                                from_step=attempt.from_step),
                            dedupe=f"{job_id}:started:{attempt.number}")
        attempt.log.info("job.started", steps=req.num_inference_steps, size=f"{req.width}x{req.height}",
                         frames=req.num_frames, lanes=list(ticket.lanes))
        self.jobs_started += 1
        devices = self.engine.devices if ticket.lane is None else [self.engine.devices[ticket.lane]]
        warm = ("first job since start-up" if self.jobs_started == 1
                else f"warm, {self.jobs_started - 1} jobs before this one")
        await self.job_log(job_id, "info", f"started on {self.runner_id} (attempt {attempt.number}); model "
                                           f"resident, rendering on {', '.join(map(str, devices))}, {warm}")
        if attempt.number > 1:
            await self.job_log(job_id, "warning", f"attempt {attempt.number}: an earlier attempt did not finish")
        attempt.started = time.perf_counter()
        attempt.moved_at = time.monotonic()
        clock = metrics.StepClock()
        # The render's events, in order: phases, progress, previews.
        progress: asyncio.Queue[JobEvent | None] = asyncio.Queue()
        publisher = asyncio.create_task(self._publish_progress(attempt, progress))
        denoised = resume is not None and resume.step >= req.num_inference_steps
        progress.put_nowait(self._phase(attempt, "decoding" if denoised else "encoding_prompt"))
        previews = None if denoised else self._job_previews(attempt, loop, progress)
        every = self.settings.checkpoint_every_steps
        latest: list[torch.Tensor] = []  # the latents of the step that just ended
        denoising: list[bool] = []  # told: at the prompt's end, else at the first step's

        def on_latents(step: int, latents: torch.Tensor) -> None:  # the render thread, before on_step
            latest[:] = [latents]
            nonlocal previews
            if previews is not None:
                try:
                    previews.on_latents(step, latents)
                except Exception as err:  # a preview is for show: this job goes on without them
                    attempt.log.error("preview.failed", step=step, exc_info=err, effect="no more previews")
                    previews = None

        def denoising_began() -> None:  # the render thread
            if not denoising:
                denoising.append(True)
                loop.call_soon_threadsafe(progress.put_nowait, self._phase(attempt, "denoising"))

        def on_step(step: int, total: int) -> None:  # runs in the render thread
            attempt.moved_at = time.monotonic()
            metrics.STEPS_RENDERED.inc()
            denoising_began()
            loop.call_soon_threadsafe(progress.put_nowait, JobProgress(
                job_id=job_id, step=step, total_steps=total, runner=self.runner_id))
            clock.tick()
            # One read of the reason decides both the checkpoint and the stop,
            # so a hand-over always stops after a step whose latents are saved.
            reason = control.reason
            if attempt.checkpoints is not None and latest:
                handing_over = reason == JobControl.SHUTDOWN
                if handing_over or step == total or (every and step % every == 0):
                    attempt.checkpoints.offer(step, latest[0], must=handing_over or step == total)
            latest.clear()
            if reason is not None:
                raise RenderStopped(reason, step)

        def render() -> np.ndarray:  # in a worker thread, on the ticket's lanes
            if ticket.idle_since is not None:
                idle = time.perf_counter() - ticket.idle_since
                metrics.GPU_IDLE_SECONDS.observe(idle)
                attempt.log.info("job.gpu_idle_before", seconds=round(idle, 3), lanes=list(ticket.lanes))
            latents = self.engine.denoise(req, on_step, lane=ticket.lane, resume=resume, on_latents=on_latents,
                                          on_prompt_encoded=denoising_began)
            attempt.moved_at = time.monotonic()  # the decode makes no steps
            if not denoised:
                loop.call_soon_threadsafe(progress.put_nowait, self._phase(attempt, "decoding"))
            if self.settings.fault_injection_decode_oom > self.decodes:
                self.decodes += 1
                raise torch.OutOfMemoryError(f"fault injection: decode {self.decodes} of "
                                             f"{self.settings.fault_injection_decode_oom} made to fail")
            return self.engine.decode(latents, lane=ticket.lane)

        metrics.BUSY.inc()
        try:
            frames = await self._watched(attempt, render, on_hang=lambda: self.slots.release(ticket))
            clock.observe_render()
        finally:
            metrics.BUSY.dec()
            # The GPUs go to the next job now (unless the render hung: then its
            # thread keeps them until it returns); the encode and upload run on
            # the CPU beside the next job's denoising.
            if not attempt.hung:
                self.slots.release(ticket)
            if previews is not None:
                # Before the publisher stops: a stored preview's event goes out,
                # and none comes after (the final event may follow at once).
                await previews.settle(PREVIEW_SETTLE_S)
            progress.put_nowait(None)
            await publisher
        attempt.log.info("job.rendered", seconds=round(time.perf_counter() - attempt.started, 2))
        return frames

    async def _checkpoint_found(self, attempt: Attempt) -> tuple[Any, torch.Tensor] | None:
        """An earlier attempt's checkpoint of this job that passes verification
        (job, request, model, shape, checksum), or None: none, the store away,
        or one that fails (logged; the job then renders from step 0)."""
        if self.checkpoints is None:
            return None
        blob = await self.checkpoints.load(attempt.job_id)
        if blob is None:
            return None
        req = attempt.event.request
        try:
            return await asyncio.to_thread(verify, blob, job_id=attempt.job_id, req=req,
                                           model_digest=self.engine.model_digest(),
                                           shape=self.engine.latent_shape(req))
        except RejectedCheckpoint as rejected:
            metrics.CHECKPOINTS_REJECTED.labels(reason=rejected.reason).inc()
            attempt.log.warning("checkpoint.rejected", reason=rejected.reason, detail=rejected.detail,
                                bytes=len(blob))
            await self.job_log(attempt.job_id, "warning", f"ignored the checkpoint found ({rejected}); "
                                                          "rendering from step 0")
            return None

    async def _resume_point(self, attempt: Attempt, found: tuple[Any, torch.Tensor] | None,
                            lane: int | None) -> Resume | None:
        if found is None:
            return None
        header, latents = found
        total = attempt.event.request.num_inference_steps
        here = self.engine.render_config(lane)
        differs = sorted(k for k in set(here) | set(header.config) if here.get(k) != header.config.get(k))
        metrics.RESUMES.labels(configuration="other" if differs else "same").inc()
        metrics.STEPS_RESUMED.inc(header.step)
        whose = (f"the checkpoint {header.runner} saved on attempt {header.attempt} at "
                 f"{header.saved_at.isoformat(timespec='seconds')}")
        if differs:
            # Allowed: the latents are the same model's; the frames differ
            # from an uninterrupted render only by rounding.
            how = "another engine configuration (" + ", ".join(
                f"{k}: {header.config.get(k)} -> {here.get(k)}" for k in differs) + "), so not bit for bit"
        else:
            how = "the same engine configuration, so bit for bit"
        what = ("denoising had finished: only the decode, encode and upload are left" if header.step >= total
                else f"resuming at step {header.step + 1} of {total}")
        attempt.log.info("job.resumed", from_step=header.step, total=total, checkpoint_runner=header.runner,
                         checkpoint_attempt=header.attempt, other_configuration=differs or None)
        await self.job_log(attempt.job_id, "info", f"{what}: {header.step} steps from {whose}, made with {how}")
        return Resume(step=header.step, latents=latents)

    async def _watched(self, attempt: Attempt, work: Callable[[], T], on_hang: Callable[[], None] | None = None) -> T:
        """`work()` in a thread, within what is left of the maximum run time
        (watchdog.py). Past it the job is stopped at its next step; if the work
        still has not returned `hang_grace_s` later, the heartbeats stop, the
        runner reports itself not alive and WorkHung ends the attempt. Its
        lanes are given back (`on_hang`) only when the thread returns."""
        max_run_s = self.settings.max_run_s
        budget = None if max_run_s <= 0 else max_run_s - (time.perf_counter() - attempt.started)

        def hung() -> None:
            if attempt.heartbeat is not None:
                attempt.heartbeat.stop()
            attempt.hung = True
            self.hung.add(attempt.job_id)

        def returned() -> None:
            self.hung.discard(attempt.job_id)
            if on_hang is not None:
                on_hang()

        return await watched(work, name=f"work-{attempt.job_id[:8]}", budget_s=budget,
                             grace_s=self.settings.hang_grace_s,
                             on_overrun=lambda: attempt.control.stop(JobControl.TIMED_OUT),
                             on_hung=hung, on_returned=returned,
                             overrun=f"the maximum run time of {max_run_s:g}s")

    async def _store_and_complete(self, attempt: Attempt, frames: np.ndarray) -> Outcome:
        job_id, req = attempt.job_id, attempt.event.request
        with tempfile.TemporaryDirectory(prefix="mochi-") as tmp:
            path = Path(tmp) / "video.mp4"
            attempt.moved_at = time.monotonic()
            await self._publish_phase(attempt, "encoding_video")
            await self._watched(attempt, partial(encode_mp4, frames, req.fps, path, preset=self.settings.mp4_preset))
            await self._publish_phase(attempt, "storing")
            size = await self._store_video(job_id, path)
            # Beside the video, before the completed event that links them;
            # never the job's failure (thumbnails.py).
            await store_thumbnails(self.store, job_id, frames, req.fps, retry=self.store_retry, log=attempt.log)
            del frames
            metrics.observe_job_since(attempt.event.time)
        seconds = time.perf_counter() - attempt.started
        rendered = req.num_inference_steps - attempt.from_step
        resumed = f" (resumed after step {attempt.from_step})" if attempt.from_step else ""
        await self.job_log(job_id, "info", f"rendered {rendered} of {req.num_inference_steps} steps{resumed} "
                                           f"and stored {size} bytes in {seconds:.1f}s")
        return await self._end(attempt, self._completed(attempt, size), ACK, "completed", "job.completed",
                               seconds=round(seconds, 2), bytes=size)

    async def _store_video(self, job_id: str, path: Path) -> int:
        """Upload without overwriting, riding out the store's short outages, then
        confirm the object exists: the completed event promises a download."""
        key = video_key(job_id)

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
        return int(size)

    def _completed(self, attempt: Attempt, size: int) -> JobCompleted:
        req = attempt.event.request
        video = VideoInfo(key=video_key(attempt.job_id), size_bytes=size, width=req.width, height=req.height,
                          num_frames=req.num_frames, fps=req.fps)
        return JobCompleted(job_id=attempt.job_id, video=video, runner=self.runner_id, attempt=attempt.number)

    # ---- endings ----------------------------------------------------------------

    async def _end(self, attempt: Attempt, final: JobEvent | None, outcome: Outcome,
                   metric: metrics.Outcome | None, what: str, **fields: Any) -> Outcome:
        """The one way a delivery ends: publish its final event (if any; the guard
        keeps it the job's only one), count the outcome only if this delivery's
        final event was published, log, and return what becomes of the message."""
        published = True
        if final is not None:
            published = await publish_final(self.js, final) is not None
        if metric is not None and published:
            metrics.finished(metric)
        # Every _end leaves the job final (this final event, or another's that
        # the guard kept): its checkpoint is of no more use. This attempt's
        # uploads settle first, so none lands after the delete.
        if attempt.checkpoints is not None:
            await attempt.checkpoints.settle(self.settings.checkpoint_wait_s)
        if self.checkpoints is not None:
            await self.checkpoints.delete(attempt.job_id)
        if self.previews is not None:
            # Previews are of renders in progress: GET .../preview answers 404 from here on.
            await self.previews.delete(attempt.job_id)
        attempt.log.info(what, final_published=published if final is not None else None, **fields)
        return outcome

    async def _checkpoint_settled(self, attempt: Attempt) -> int | None:
        """Before the job goes back to the queue: the step its next delivery
        resumes after (this attempt's newest saved one), once the uploads are done."""
        if attempt.checkpoints is None:
            return None
        return await attempt.checkpoints.settle(self.settings.checkpoint_wait_s)

    async def _stopped(self, attempt: Attempt, stop: RenderStopped) -> Outcome:
        job_id, number = attempt.job_id, attempt.number
        if stop.reason == JobControl.SHUTDOWN:
            # Hand the job back at once rather than after the ack wait, once
            # the latents of the step it stopped after are stored.
            saved = await self._checkpoint_settled(attempt)
            metrics.finished("handed_back")
            attempt.log.info("job.handed_back", step=stop.step, checkpoint_step=saved)
            if saved is not None:
                await self.job_log(job_id, "info", f"handed back by {self.runner_id} (shutting down) after step "
                                                   f"{stop.step}; the next attempt resumes after step {saved}")
            return Nak()
        if stop.reason == JobControl.TIMED_OUT:
            reason = (f"ran past the maximum run time of {self.settings.max_run_s:g}s "
                      f"(stopped at step {stop.step})")
            await self.job_log(job_id, "error", reason)
            return await self._end(attempt, JobFailed(job_id=job_id, reason=reason, attempts=number),
                                   Term(reason), "failed", "job.timed_out", step=stop.step)
        if stop.reason == JobControl.EXPIRED:
            return await self._end(attempt, JobExpired(job_id=job_id, reason=self._deadline_reason(attempt)),
                                   ACK, None, "job.expired_waiting_for_a_lane")
        if stop.reason == JobControl.CANCELLED:
            reason = f"cancelled at step {stop.step}" if stop.step else "cancelled before it started"
            return await self._end(attempt, JobCancelled(job_id=job_id, reason=reason), ACK, "cancelled",
                                   "job.cancelled", step=stop.step)
        return await self._end(attempt, None, ACK, None, "job.finished_elsewhere", step=stop.step)

    async def _failed(self, attempt: Attempt, err: Exception) -> Outcome:
        """A failed attempt: retried, or the job's end on its last delivery. Its
        own publishes may fail too (NATS away): then the message is nak'ed and
        JetStream's redelivery (or, past max deliveries, the dead letters) ends
        the job; nothing here raises out of the runner."""
        reason = f"{type(err).__name__}: {err}"
        oom = _is_oom(err)
        saved = await self._checkpoint_settled(attempt)
        denoised = saved is not None and saved >= attempt.event.request.num_inference_steps
        if oom:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            reason = f"out of GPU memory at {reason}; try fewer frames or a smaller size"
        reason = clip(reason)
        # Another try on the same GPU would run out of memory again, unless the
        # denoised latents are saved: a redelivery then only decodes, with
        # nothing else on the GPU it lands on.
        final = (oom and not denoised) or attempt.number >= self.settings.max_deliver
        attempt.log.error("job.attempt_failed", reason=reason, final=final, exc_info=err)
        try:
            retried = "" if final else "; it will be retried" + (
                " from its saved latents (no denoising step again)" if denoised
                else f" after step {saved}" if saved else "")
            await self.job_log(attempt.job_id, "error", f"attempt {attempt.number} failed: {reason}{retried}")
            if not final:
                metrics.finished("retried")
                return Nak(min(2.0 ** attempt.number, 30.0))
            return await self._end(attempt, JobFailed(job_id=attempt.job_id, reason=reason, attempts=attempt.number),
                                   Term(reason), "failed", "job.failed")
        except Exception as publish_err:
            attempt.log.error("job.failure_not_recorded", error=repr(publish_err))
            return Nak(5.0)

    async def _duplicate(self, msg: Msg, event: JobSubmitted, ended: asyncio.Event) -> Outcome:
        """A new delivery of a job this runner still works on: its ack wait ran
        out (NATS was away and the heartbeats with it), and now that a lane is
        free the runner pulled it again while the first attempt uploads. Rendering
        it again would waste the GPUs and publish a second attempt's events after
        the first one's final event. So: wait for the local attempt (its `ended`
        event, taken before any await, so the attempt cannot end unseen), then
        ack if that ended the job, else hand this delivery back."""
        bound = log.bind(job_id=event.job_id, attempt=msg.metadata.num_delivered)
        heartbeat = Heartbeat(msg, self.heartbeat_s)
        try:
            await ended.wait()
            if await last_event(self.js, subjects.job_final(event.job_id), consistent=True) is not None:
                bound.info("job.duplicate_delivery_acked")
                return ACK
            bound.info("job.duplicate_delivery_handed_back")
            return Nak(1.0)
        finally:
            heartbeat.stop()

    # ---- events about the job ---------------------------------------------------

    async def job_log(self, job_id: str, level: LogLevel, message: str) -> None:
        """One line in the job's own log (GET /v1/jobs/{id}/logs, its SSE stream);
        never fails the job."""
        try:
            await publish_event(self.js, JobLog(job_id=job_id, level=level, message=clip(message),
                                                runner=self.runner_id),
                                dedupe=f"{job_id}:log:{uuid.uuid4().hex}")
        except Exception as err:
            log.warning("job.log_not_published", job_id=job_id, error=repr(err))

    def _phase(self, attempt: Attempt, phase: RunnerPhase) -> JobPhase:
        return JobPhase(job_id=attempt.job_id, phase=phase, runner=self.runner_id)

    async def _publish_phase(self, attempt: Attempt, phase: RunnerPhase) -> None:
        """A phase after the render (encoding, storing): informational, never fails the job."""
        if attempt.control.reason == JobControl.FINISHED_ELSEWHERE:
            return
        try:
            await publish_event(self.js, self._phase(attempt, phase),
                                dedupe=f"{attempt.job_id}:phase:{attempt.number}:{phase}")
        except Exception as err:
            attempt.log.warning("job.phase_not_published", phase=phase, error=repr(err))

    def _job_previews(self, attempt: Attempt, loop: asyncio.AbstractEventLoop,
                      queue: asyncio.Queue[JobEvent | None]) -> JobPreviews | None:
        if self.previews is None:
            return None
        req = attempt.event.request

        async def published(step: int, size: int) -> None:
            queue.put_nowait(JobPreview(job_id=attempt.job_id, step=step, total_steps=req.num_inference_steps,
                                        bytes=size, runner=self.runner_id))

        return JobPreviews(self.previews, loop, job_id=attempt.job_id,
                           latent_frames=self.engine.latent_shape(req)[2],
                           sigmas=schedule(self.engine.pipe.scheduler.config, req.num_inference_steps),
                           every_s=self.settings.preview_every_s, published=published)

    async def _publish_progress(self, attempt: Attempt, queue: asyncio.Queue[JobEvent | None]) -> None:
        while (event := await queue.get()) is not None:
            if attempt.control.reason == JobControl.FINISHED_ELSEWHERE:
                continue  # the job has its final event: nothing may follow it on its stream
            match event:
                case JobProgress(step=step) | JobPreview(step=step):
                    which = str(step)
                case JobPhase(phase=phase):
                    which = phase
                case _:
                    which = uuid.uuid4().hex
            kind = event_type(event)
            try:
                await publish_event(self.js, event, dedupe=f"{attempt.job_id}:{kind}:{attempt.number}:{which}")
            except Exception as err:  # progress is informational: the render goes on
                attempt.log.warning("job.progress_not_published", event_type=kind, which=which, error=repr(err))

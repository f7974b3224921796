"""The runner process: load Mochi, warm it, then pull jobs while a GPU lane is free.

A job holds its lanes (gpu_slots.py) only while it renders; its MP4 encode and
upload run while the next job already denoises."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from mochi_common.consumer import DurableConsumer
from mochi_common.health_server import serve_health
from mochi_common.jetstream_setup import ensure_runner_topology
from mochi_common.logs import configure_logging
from mochi_common.nats_conn import PatientJetStream, Reconnects, connect
from mochi_common.settings import load_settings
from mochi_common.storage import open_store
from mochi_common.supervise import Supervisor
from mochi_contracts.streams import (
    DEAD_LETTER_CONSUMER, DEAD_LETTER_STREAM, JOBS_STREAM, RELEASE_STREAM, RELEASED_CONSUMER, RUNNERS_CONSUMER)
from mochi_runner import metrics
from mochi_runner.checkpoints import CheckpointStore
from mochi_runner.dead_letters import DeadLetters
from mochi_runner.engine import MochiEngine, engine_config
from mochi_runner.gpu_slots import GpuSlots
from mochi_runner.job_handler import JobHandler
from mochi_runner.settings import RunnerSettings
from mochi_runner.thread_futures import set_exception_unless_done, set_result_unless_done
from mochi_scheduler.released_work import ReleasedWork
from mochi_scheduler.topology import ensure_runner_release_topology

log = structlog.get_logger()


def load_engine(settings: RunnerSettings) -> MochiEngine:
    model_dir = Path(settings.model_dir)
    if settings.build_tiny_model:
        from mochi_runner.tiny_model import ensure_tiny_model

        ensure_tiny_model(model_dir)
    # engine_config also carries the multi-GPU, compile and benchmark-only options.
    engine = MochiEngine(engine_config(settings))
    if settings.warmup:
        engine.warm_up()
    return engine


async def _load(settings: RunnerSettings, stop: asyncio.Event) -> MochiEngine | None:
    """The engine, or None if the runner was told to stop while it loaded.
    In a daemon thread: loading cannot be interrupted, and a stop during it
    must not wait for it (nothing is held yet: no NATS connection, no job)."""
    loop = asyncio.get_running_loop()
    loaded: asyncio.Future[MochiEngine] = loop.create_future()

    def load() -> None:
        try:
            engine = load_engine(settings)
        except BaseException as err:  # handed to the event loop, which raises it at start-up
            loop.call_soon_threadsafe(set_exception_unless_done, loaded, err)
        else:
            loop.call_soon_threadsafe(set_result_unless_done, loaded, engine)

    threading.Thread(target=load, name="load-model", daemon=True).start()
    stopping = asyncio.ensure_future(stop.wait())
    try:
        either: set[asyncio.Future[Any]] = {loaded, stopping}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    return loaded.result() if loaded.done() else None


async def run(settings: RunnerSettings) -> None:
    started = time.perf_counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # From the first instruction: a stop while the model loads ends the process
    # at once instead of waiting out the grace period.
    handler: JobHandler | None = None
    slots: GpuSlots | None = None

    def on_signal() -> None:
        log.info("runner.draining")
        stop.set()
        if slots is not None:
            slots.close()
        if handler is not None:
            handler.shutdown()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    supervisor = Supervisor()
    ready = False
    nc = None

    def is_ready() -> bool:
        return ready and nc is not None and nc.is_connected and not stop.is_set() and supervisor.healthy()

    def stalled() -> list[str]:
        return handler.stalled() if handler is not None else []

    if settings.health_port:
        # Up before the model loads: alive (healthz) but not ready (readyz) while loading.
        await serve_health(settings.health_host, settings.health_port, is_ready,
                           alive=stalled, not_ready=supervisor.unhealthy)
    # Loading takes minutes on a GPU node; connect only once the model is
    # resident, so a runner never holds a job it cannot start on.
    engine = await _load(settings, stop)
    if engine is None:
        log.info("runner.stopped_while_loading")
        return
    metrics.watch_gpu_memory(engine.devices)
    reconnects = Reconnects()
    nc = await connect(settings.nats_url, name=f"mochi-runner-{settings.runner_id}", reconnects=reconnects)
    js = nc.jetstream()
    # fifo: submissions straight from `gpu-runners`; fair: the scheduler's
    # releases from `released-runners` (docs/scheduling.md).
    fair = settings.scheduling == "fair"
    js_settings = settings.jetstream(ack_wait_s=settings.ack_wait_s,
                                    max_deliver=settings.max_deliver)
    if fair:
        await ensure_runner_release_topology(js, js_settings)
    else:
        await ensure_runner_topology(js, js_settings)
    # In a thread: an s3:// store checks its bucket over the network at start.
    store = await asyncio.to_thread(open_store, settings.store_url, settings)
    slots = GpuSlots(len(engine.lanes) or 1)
    # Renders in progress are saved to, and resumed from, the checkpoint bucket;
    # with the bucket away jobs render without checkpoints (issue 20).
    checkpoints = CheckpointStore(js, settings.jetstream())
    await checkpoints.open()
    handler = JobHandler(settings, nc, engine, store, slots, checkpoints)
    if stop.is_set():
        on_signal()
    if not fair:  # in fair mode the scheduler fails the releases that ran out of deliveries
        dead = DeadLetters(PatientJetStream(js, settings.publish_patience_s))
        dead_consumer = DurableConsumer(js, DEAD_LETTER_STREAM, DEAD_LETTER_CONSUMER, label="dead-letters",
                                        reconnects=reconnects, fetch_timeout_s=2.0)
        supervisor.start("dead-letters", lambda: dead_consumer.run(dead.handle, stop))
    # Jobs in flight: rendering, waiting for a lane, or encoding and uploading
    # after their render. Bounded so a slow store cannot pile up decoded videos;
    # a job is pulled only while a lane is free and no pulled job waits for one.
    jobs = DurableConsumer(js, RELEASE_STREAM if fair else JOBS_STREAM,
                           RELEASED_CONSUMER if fair else RUNNERS_CONSUMER, label="runner-jobs",
                           reconnects=reconnects, concurrency=slots.lanes + settings.max_uploading_jobs,
                           max_failures=settings.max_deliver)
    released = ReleasedWork(js, handler.handle) if fair else None

    async def room() -> bool:
        if released is not None and released.looking_up:
            await asyncio.sleep(0.02)  # a release whose submission is being read has no GPU ticket yet
            return False
        return await slots.wait_for_room(timeout=1.0)

    ready = True
    metrics.STARTUP_SECONDS.set(time.perf_counter() - started)
    log.info("runner.ready", runner_id=settings.runner_id, lanes=slots.lanes,
             startup_seconds=round(time.perf_counter() - started, 2))
    # Draining: renders stop at their next step and hand their jobs back;
    # uploads under way finish (no drain timeout).
    await jobs.run(released.handle if released else handler.handle, stop, room=room, drain_timeout_s=None)
    await supervisor.stop()
    await nc.drain()
    log.info("runner.stopped")


def main() -> None:
    settings = load_settings(RunnerSettings)
    configure_logging("gpu-runner", settings.log_level)
    asyncio.run(run(settings))

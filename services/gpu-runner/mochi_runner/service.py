"""The runner process: load Mochi, warm it, then pull jobs while a GPU lane is free.

A job holds its lanes (gpu_slots.py) only while it renders; its MP4 encode and
upload run while the next job already denoises."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import structlog

from mochi_common.health_server import serve_health
from mochi_common.logs import configure_logging
from mochi_common.nats_conn import Reconnects, connect
from mochi_common.pull import DurablePuller
from mochi_common.settings import load_settings
from mochi_common.storage import open_store
from mochi_common.storage.retry import RetryPolicy
from mochi_common.jetstream_setup import ensure_runner_topology
from mochi_contracts.streams import JOBS_STREAM, RUNNERS_CONSUMER, JetStreamSettings
from mochi_runner.dead_letters import fail_dead_jobs
from mochi_runner.engine import MochiEngine, engine_config
from mochi_runner.gpu_slots import GpuSlots
from mochi_runner import metrics
from mochi_runner.job_handler import JobHandler
from mochi_runner.settings import RunnerSettings

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


async def run(settings: RunnerSettings) -> None:
    started = time.perf_counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    ready = False
    if settings.health_port:
        # Up before the model loads: alive (healthz) but not ready (readyz) while loading.
        # `ready` turns true only once `nc` exists, so the lambda never reads it unbound.
        await serve_health(settings.health_host, settings.health_port,
                           lambda: ready and nc.is_connected and not stop.is_set())
    # Loading takes minutes on a GPU node; connect only once the model is
    # resident, so a runner never holds a job it cannot start on.
    engine = await asyncio.to_thread(load_engine, settings)
    metrics.watch_gpu_memory(engine.devices)
    reconnects = Reconnects()
    nc = await connect(settings.nats_url, name=f"mochi-runner-{settings.runner_id}", reconnects=reconnects)
    js = nc.jetstream()
    jscfg = JetStreamSettings(replicas=settings.jetstream_replicas, ack_wait_s=settings.ack_wait_s,
                              max_deliver=settings.max_deliver)
    await ensure_runner_topology(js, jscfg)
    store_retry = RetryPolicy(attempts=settings.store_retry_attempts,
                              first_delay_s=settings.store_retry_first_delay_s,
                              max_delay_s=settings.store_retry_max_delay_s)
    # In a thread: an s3:// store checks its bucket over the network at start.
    store = await asyncio.to_thread(open_store, settings.store_url, settings)
    slots = GpuSlots(len(engine.lanes) or 1)
    handler = JobHandler(nc, engine, store, settings.runner_id, settings.ack_wait_s, settings.max_deliver,
                         slots, store_retry=store_retry, max_run_s=settings.max_run_s,
                         mp4_preset=settings.mp4_preset)

    def on_signal() -> None:
        log.info("runner.draining")
        stop.set()
        slots.close()
        handler.shutdown()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    dead_letters = asyncio.create_task(fail_dead_jobs(nc, stop, reconnects), name="dead-letters")
    jobs = DurablePuller(js, JOBS_STREAM, RUNNERS_CONSUMER, reconnects)
    ready = True
    metrics.STARTUP_SECONDS.set(time.perf_counter() - started)
    log.info("runner.ready", runner_id=settings.runner_id, lanes=slots.lanes,
             startup_seconds=round(time.perf_counter() - started, 2))
    # Jobs in flight: rendering, waiting for a lane, or encoding and uploading
    # after their render. Bounded so a slow store cannot pile up decoded videos.
    in_flight: set[asyncio.Task[None]] = set()
    max_in_flight = slots.lanes + settings.max_uploading_jobs
    while not stop.is_set():
        if dead_letters.done():
            dead_letters.result()  # it died: fail loudly rather than run without it
        for task in [t for t in in_flight if t.done()]:
            in_flight.discard(task)
            task.result()  # the handler catches each job's errors; anything else is a bug: crash
        if len(in_flight) >= max_in_flight:
            await asyncio.wait(in_flight, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            continue
        if not await slots.wait_for_room(timeout=1.0):
            continue
        msg = await jobs.next(timeout=1.0)
        if msg is None:
            continue
        event = await handler.accept(msg)
        if event is None:
            continue
        if handler.working_on(event.job_id):
            # A redelivery of a job still uploading here: it needs no GPU.
            in_flight.add(asyncio.create_task(handler.handle_duplicate(msg, event), name=f"dup-{event.job_id}"))
            continue
        ticket = slots.ticket(whole=handler.wants_every_lane(event))
        in_flight.add(asyncio.create_task(handler.handle(msg, event, ticket), name=f"job-{event.job_id}"))
    # Draining: renders stop at their next step and hand their jobs back;
    # uploads under way finish.
    for task in asyncio.as_completed(in_flight):
        await task
    await dead_letters
    await jobs.close()
    await nc.drain()
    log.info("runner.stopped")


def main() -> None:
    settings = load_settings(RunnerSettings)
    configure_logging("gpu-runner", settings.log_level)
    asyncio.run(run(settings))

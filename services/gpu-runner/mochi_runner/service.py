"""The runner process: load Mochi, warm it, then pull jobs one at a time."""

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
from mochi_contracts.streams import (
    JOBS_STREAM, RUNNERS_CONSUMER, JetStreamSettings, ensure_runner_topology)
from mochi_runner.dead_letters import fail_dead_jobs
from mochi_runner.engine import MochiEngine, engine_config
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
    handler = JobHandler(nc, engine, store, settings.runner_id,
                         settings.ack_wait_s, settings.max_deliver, store_retry=store_retry,
                         max_run_s=settings.max_run_s)

    def on_signal() -> None:
        log.info("runner.draining")
        stop.set()
        handler.shutdown()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    dead_letters = asyncio.create_task(fail_dead_jobs(nc, stop, reconnects), name="dead-letters")
    jobs = DurablePuller(js, JOBS_STREAM, RUNNERS_CONSUMER, reconnects)
    ready = True
    metrics.STARTUP_SECONDS.set(time.perf_counter() - started)
    log.info("runner.ready", runner_id=settings.runner_id,
             startup_seconds=round(time.perf_counter() - started, 2))
    while not stop.is_set():
        if dead_letters.done():
            dead_letters.result()  # it died: fail loudly rather than run without it
        msg = await jobs.next(timeout=1.0)
        if msg is not None:
            await handler.handle(msg)
    await dead_letters
    await jobs.close()
    await nc.drain()
    log.info("runner.stopped")


def main() -> None:
    settings = load_settings(RunnerSettings)
    configure_logging("gpu-runner", settings.log_level)
    asyncio.run(run(settings))

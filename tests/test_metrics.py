"""/metrics on every service, scraped over HTTP from the real processes."""

from __future__ import annotations

import asyncio

import httpx
import nats
from prometheus_client.parser import text_string_to_metric_families

from conftest import SMALL
from mochi_common.nats_conn import publish_event
from mochi_contracts import subjects
from mochi_contracts.events import JobProgress
from mochi_common.jetstream_setup import ensure_runner_topology
from mochi_contracts.streams import RUNNERS_CONSUMER, JetStreamSettings
from waits import wait_until

GPU_RUNNERS = {"consumer": RUNNERS_CONSUMER}


class Scrape:
    """One scrape of a /metrics endpoint: samples by name and labels."""

    def __init__(self, base_url: str):
        resp = httpx.get(f"{base_url}/metrics", timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        self.samples = [s for family in text_string_to_metric_families(resp.text)
                        for s in family.samples]

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the one sample whose labels include `labels`, or None."""
        found = [s.value for s in self.samples
                 if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def labels(self, name: str, key: str) -> set[str]:
        return {s.labels[key] for s in self.samples if s.name == name}


def test_every_service_reports_a_finished_job(system):
    catalog = system.start_catalog(MOCHI_METRICS_INTERVAL_S="0.2")
    runner = system.start_runner(wait=True)
    system.start_api()
    client = system.client()

    # Before any job: the runner's start-up is known, it is idle, and nothing finished.
    before = Scrape(runner.health_url)
    assert before.get("mochi_runner_startup_seconds") > 0
    assert before.get("mochi_runner_busy") == 0
    assert before.get("mochi_runner_jobs_finished_total", outcome="completed") == 0
    assert before.get("mochi_runner_step_seconds_count") == 0  # the warm-up render is not a job
    # A CPU runner has no GPU memory to report.
    assert not {n for n in before.names() if n.startswith("mochi_runner_gpu_memory")}

    job = client.submit("a cat walks on the grass", **SMALL)
    done = client.wait(job.id, timeout=120, poll=0.1)
    assert done.status == "completed", done
    client.get(job.id)
    client.list()

    # Runner: one job completed, every step timed, the render and the whole job timed.
    steps = SMALL["num_inference_steps"]
    after = wait_until(lambda: (s := Scrape(runner.health_url)).get("mochi_runner_busy") == 0 and s,
                       what="runner idle")
    assert after.get("mochi_runner_jobs_finished_total", outcome="completed") == 1
    for outcome in ("failed", "retried", "cancelled", "handed_back"):
        assert after.get("mochi_runner_jobs_finished_total", outcome=outcome) == 0
    assert after.get("mochi_runner_step_seconds_count") == steps
    assert after.get("mochi_runner_step_seconds_bucket", le="+Inf") == steps
    assert after.get("mochi_runner_step_seconds_sum") > 0
    assert after.get("mochi_runner_render_seconds_count") == 1
    assert after.get("mochi_runner_job_seconds_count") == 1
    # Submit to stored spans the render, and a render spans its steps.
    assert after.get("mochi_runner_job_seconds_sum") >= after.get("mochi_runner_render_seconds_sum")
    assert after.get("mochi_runner_render_seconds_sum") >= after.get("mochi_runner_step_seconds_sum")

    # Catalog: the job by status, the runners' queue empty, the projection caught up.
    events = len(system.events(f"mochi.jobs.{job.id}.>"))  # submitted, started, progress..., completed

    def caught_up() -> Scrape | None:
        s = Scrape(catalog.health_url)
        ok = (s.get("mochi_catalog_jobs", status="completed") == 1
              and s.get("mochi_catalog_stream_last_sequence") == events
              and s.get("mochi_catalog_consumer_ack_pending", **GPU_RUNNERS) == 0)
        return s if ok else None

    cat = wait_until(caught_up, timeout=30, what="catalog metrics")
    for status in ("queued", "running", "failed", "cancelled"):
        assert cat.get("mochi_catalog_jobs", status=status) == 0
    assert cat.get("mochi_catalog_queue_depth", **GPU_RUNNERS) == 0
    assert cat.get("mochi_catalog_consumer_redelivered", **GPU_RUNNERS) == 0
    assert cat.get("mochi_catalog_consumer_waiting", **GPU_RUNNERS) >= 0  # the idle runner's pull, if open
    assert cat.get("mochi_catalog_applied_sequence") == events
    assert cat.get("mochi_catalog_projection_lag_events") == 0
    assert cat.get("mochi_catalog_events_applied_total") == events
    assert cat.get("mochi_catalog_events_rejected_total", reason="unreadable") == 0
    assert cat.get("mochi_catalog_events_rejected_total", reason="unknown_job") == 0
    assert cat.get("mochi_catalog_metrics_refresh_errors_total") == 0
    assert cat.get("mochi_catalog_metrics_refreshed_timestamp_seconds") > 0

    # API: requests counted per route template, so no job id is a label value.
    api = Scrape(system.api_url)
    assert api.get("mochi_api_requests_total", method="POST", path="/v1/jobs", status_code="202") == 1
    assert api.get("mochi_api_requests_total", method="GET", path="/v1/jobs", status_code="200") == 1
    paths = api.labels("mochi_api_requests_total", "path")
    by_id = {p for p in paths if p.startswith("/v1/jobs/{")}
    assert len(by_id) == 1, paths  # /v1/jobs/{job_id}: every poll of every job, one series
    assert api.get("mochi_api_requests_total", method="GET", path=by_id.pop(), status_code="200") >= 2
    assert not any(job.id in p for p in paths), paths
    assert "/metrics" not in paths
    assert api.get("mochi_api_request_duration_seconds_count", method="POST", path="/v1/jobs",
                   status_code="202") == 1
    assert api.get("mochi_api_requests_in_progress", method="POST", path="/v1/jobs") == 0

    # Health and readiness are still there beside /metrics.
    for url in (system.api_url, catalog.health_url, runner.health_url):
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200


def test_catalog_reports_queue_depth_and_rejected_events(system):
    """No runner pulls, so submitted jobs wait in the runners' consumer; events the
    projection cannot use are counted by reason."""
    catalog = system.start_catalog(MOCHI_METRICS_INTERVAL_S="0.2")
    system.start_api()

    async def set_up_and_publish_junk() -> None:
        nc = await nats.connect(system.nats_url)
        js = nc.jetstream()
        # What a runner makes at start: the work consumer the catalog samples.
        await ensure_runner_topology(js, JetStreamSettings())
        await js.publish(subjects.event_subject("f" * 32, "progress"), b"not json")
        await publish_event(js, JobProgress(job_id="e" * 32, step=1, total_steps=2, runner="r"))
        await nc.close()

    asyncio.run(set_up_and_publish_junk())
    client = system.client()
    jobs = [client.submit(f"waiting job {i}", **SMALL) for i in range(3)]

    def sampled() -> Scrape | None:
        s = Scrape(catalog.health_url)
        ok = (s.get("mochi_catalog_queue_depth", **GPU_RUNNERS) == len(jobs)
              and s.get("mochi_catalog_jobs", status="queued") == len(jobs)
              and s.get("mochi_catalog_projection_lag_events") == 0)
        return s if ok else None

    cat = wait_until(sampled, timeout=30, what="queued jobs in the catalog's metrics")
    assert cat.get("mochi_catalog_consumer_ack_pending", **GPU_RUNNERS) == 0
    assert cat.get("mochi_catalog_events_rejected_total", reason="unreadable") == 1
    assert cat.get("mochi_catalog_events_rejected_total", reason="unknown_job") == 1
    assert cat.get("mochi_catalog_events_applied_total") == len(jobs)
    assert cat.get("mochi_catalog_applied_sequence") == len(jobs) + 2


def test_runner_is_busy_while_rendering_and_counts_a_cancel(system):
    catalog = system.start_catalog(MOCHI_METRICS_INTERVAL_S="0.2")
    runner = system.start_runner(wait=True)
    system.start_api()
    client = system.client()
    job = client.submit("a long one", **{**SMALL, "num_inference_steps": 150})
    wait_until(lambda: client.get(job.id).progress.step >= 3, timeout=60, what="running")
    busy = Scrape(runner.health_url)
    assert busy.get("mochi_runner_busy") == 1
    assert busy.get("mochi_runner_step_seconds_count") >= 3
    wait_until(lambda: Scrape(catalog.health_url).get("mochi_catalog_jobs", status="running") == 1,
               timeout=30, what="running in the catalog")
    wait_until(lambda: Scrape(catalog.health_url).get(
        "mochi_catalog_consumer_ack_pending", **GPU_RUNNERS) == 1, timeout=30, what="in flight")

    client.cancel(job.id)
    assert client.wait(job.id, timeout=60).status == "cancelled"
    after = wait_until(lambda: (s := Scrape(runner.health_url)).get("mochi_runner_busy") == 0 and s,
                       what="runner idle")
    assert after.get("mochi_runner_jobs_finished_total", outcome="cancelled") == 1
    assert after.get("mochi_runner_jobs_finished_total", outcome="completed") == 0
    assert after.get("mochi_runner_render_seconds_count") == 0  # a stopped render is not timed
    assert after.get("mochi_runner_job_seconds_count") == 0
    wait_until(lambda: Scrape(catalog.health_url).get("mochi_catalog_jobs", status="cancelled") == 1,
               timeout=30, what="cancelled in the catalog")


def test_runner_reports_gpu_memory_per_device():
    """On a CUDA machine: each device the engine uses, read at scrape time."""
    import pytest
    import torch
    from prometheus_client import CollectorRegistry, generate_latest

    from mochi_runner.metrics import GpuMemoryCollector, watch_gpu_memory

    if not torch.cuda.is_available():
        assert watch_gpu_memory([torch.device("cpu")]) is None  # absent on a CPU runner
        pytest.skip("no CUDA device")
    registry = CollectorRegistry()
    registry.register(GpuMemoryCollector([torch.device("cuda:0")]))
    held = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda:0")
    text = generate_latest(registry).decode()
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["mochi_runner_gpu_memory_allocated_bytes"].labels == {"device": "cuda:0"}
    assert samples["mochi_runner_gpu_memory_allocated_bytes"].value >= held.numel()
    assert samples["mochi_runner_gpu_memory_max_allocated_bytes"].value >= held.numel()
    assert 0 < samples["mochi_runner_gpu_memory_free_bytes"].value < samples[
        "mochi_runner_gpu_memory_total_bytes"].value

"""One runner keeps its GPUs busy: a job gives its lanes back as soon as it is
decoded, so the next job denoises while the last one encodes and uploads, and
a two-lane runner renders two guidance-free jobs at once, one per device.

Real processes: nats-server, catalog, API, a runner with the tiny model, and
an S3 server behind a TCP proxy that the test cuts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import defaultdict

import nats

from conftest import SMALL
from mochi_contracts.streams import JOBS_STREAM, RUNNERS_CONSUMER
from test_s3_store import check_download, runner_retries, s3, start_behind_store_proxy  # noqa: F401 (fixture)
from waits import wait_until


def by_job(system) -> dict[str, list]:
    events: dict[str, list] = defaultdict(list)
    for msg in system.events():
        if msg.type:
            events[msg.event.job_id].append(msg)
    return events


def redelivered(system) -> int:
    """Messages the runners' consumer has delivered more than once and not acked."""
    async def ask() -> int:
        nc = await nats.connect(system.nats_url)
        try:
            info = await nc.jetstream().consumer_info(JOBS_STREAM, RUNNERS_CONSUMER)
            return info.num_redelivered or 0
        finally:
            await nc.close()
    return asyncio.run(ask())


def seq_of(messages: list, kind: str) -> list[int]:
    return [m.seq for m in messages if m.type == kind]


def test_next_job_renders_while_the_last_one_waits_for_the_store(system, s3):  # noqa: F811
    """Job A is rendered, then the store goes away: A's upload retries, and
    meanwhile job B starts and renders to its last step on the same runner.
    Without the overlap B could not start until A's upload gave up."""
    proxy, runner, client = start_behind_store_proxy(system, s3)
    # Slow enough (seconds) that the store is cut while A still renders.
    a = client.submit("a boat sails at dawn", width=128, height=128, num_frames=7, num_inference_steps=150)
    wait_until(lambda: client.get(a.id).status == "running", timeout=60, every=0.02,
               what="job A to start")
    b = client.submit("a fox in the snow", **{**SMALL, "num_inference_steps": 8})
    proxy.down()
    try:
        wait_until(lambda: runner_retries(runner, "put_new"), timeout=120, what="A's upload to be retried")
        # B renders all its steps while A still waits for the store.
        wait_until(lambda: any(m.type == "progress" and m.event.step == 8 for m in by_job(system)[b.id]),
                   timeout=120, what="job B's last step during the outage")
        assert client.get(a.id).status == "running"  # A is not completed before its video exists
    finally:
        proxy.up()
    for job in (a, b):
        assert client.wait(job.id, timeout=120).status == "completed"
    events = by_job(system)
    a_done = seq_of(events[a.id], "completed")
    b_started = seq_of(events[b.id], "started")
    assert len(a_done) == 1 and len(b_started) == 1 and len(seq_of(events[b.id], "completed")) == 1
    assert b_started[0] < a_done[0], "job B did not start before job A was stored"
    for job in (a, b):
        check_download(system, job.id, s3)
    # The runner measured the GPU gap before B (its idle time between jobs).
    gaps = [json.loads(line) for line in runner.log().splitlines()
            if line.startswith("{") and '"job.gpu_idle_before"' in line]
    assert gaps and all(g["seconds"] >= 0 for g in gaps)


def test_two_guidance_free_jobs_render_at_once_one_per_lane(system):
    """A runner with two devices (both the CPU here; on a GPU node cuda:0 and
    cuda:1) renders two guidance-free jobs side by side, each on its own lane;
    a guided job then takes both lanes."""
    system.start_catalog()
    runner = system.start_runner(wait=True, MOCHI_DEVICES="cpu,cpu")
    system.start_api()
    client = system.client()
    params = {**SMALL, "num_inference_steps": 40, "guidance_scale": 1.0}
    free = [client.submit(f"a lighthouse in a storm {i}", **params) for i in range(2)]
    guided = client.submit("a lighthouse at noon", **{**SMALL, "guidance_scale": 4.5})
    for job in (*free, guided):
        assert client.wait(job.id, timeout=300).status == "completed"

    events = by_job(system)
    first, second = (events[job.id] for job in free)
    # Both started before either finished: they rendered at the same time.
    assert max(seq_of(first, "started") + seq_of(second, "started")) < \
        min(seq_of(first, "completed") + seq_of(second, "completed"))
    started = {json.loads(line)["job_id"]: json.loads(line)["lanes"] for line in runner.log().splitlines()
               if line.startswith("{") and '"job.started"' in line}
    assert sorted(started[job.id][0] for job in free) == [0, 1]
    assert all(len(started[job.id]) == 1 for job in free)
    assert started[guided.id] == [0, 1]
    for job in (*free, guided):
        assert len(seq_of(events[job.id], "started")) == 1
        assert len(seq_of(events[job.id], "completed")) == 1


def test_redelivery_of_a_job_still_uploading_here_is_not_rendered_again(system, s3):  # noqa: F811
    """The runner renders job A, then its upload waits for a cut store. The
    runner is frozen past the ack wait, so JetStream hands A out again, and the
    runner itself pulls that delivery, since its GPU is free. It must not render A
    a second time: the delivery waits for the local attempt and is acked."""
    system.settings.update({"MOCHI_ACK_WAIT_S": "2"})
    proxy, runner, client = start_behind_store_proxy(system, s3)
    proxy.down()
    job = client.submit("a heron stands in the reeds", **SMALL)
    try:
        wait_until(lambda: runner_retries(runner, "put_new"), timeout=120, what="A's upload to be retried")
        os.kill(runner.popen.pid, signal.SIGSTOP)
        time.sleep(4)  # past the 2 s ack wait: JetStream will deliver A again
        os.kill(runner.popen.pid, signal.SIGCONT)
        # The second delivery is out (the server counts it as redelivered) and
        # the runner has had time to pull it while A's upload still waits.
        wait_until(lambda: redelivered(system) >= 1, timeout=30, what="A's second delivery")
        time.sleep(2)
    finally:
        proxy.up()
    assert client.wait(job.id, timeout=120).status == "completed"
    wait_until(lambda: '"job.duplicate_delivery_acked"' in runner.log(), timeout=30,
               what="the second delivery to be acked without a render")
    events = by_job(system)[job.id]
    assert len(seq_of(events, "started")) == 1 and len(seq_of(events, "completed")) == 1
    assert not seq_of(events, "failed")
    check_download(system, job.id, s3)

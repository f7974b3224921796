"""A runner contains what goes wrong inside one job: a render that hangs past
the maximum run time, a deadline that passes while a job waits for a lane, a
stop while the model still loads, a last attempt that fails while NATS is away."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import nats

from conftest import SMALL
from mochi_contracts.job_state import FINAL_STATUSES
from mochi_contracts.streams import JOBS_STREAM, RUNNERS_CONSUMER
from tcp_proxy import TcpProxy
from waits import wait_until, watching_health

# Two steps, then a VAE decode of seconds on the CPU: no step can interrupt it.
LONG_DECODE = {"width": 512, "height": 512, "num_frames": 61, "num_inference_steps": 2}
# The runner's patience with one publish in the outage test (60 s deployed):
# three publishes meet the outage, so it lasts about three of these.
PATIENCE_S = 10.0


def _job(system, job_id: str) -> dict:
    return httpx.get(f"{system.api_url}/v1/jobs/{job_id}", timeout=10).json()


def _submit(system, body: dict, headers: dict | None = None) -> str:
    resp = httpx.post(f"{system.api_url}/v1/jobs", json=body, headers=headers or {}, timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def test_work_that_hangs_past_the_run_time_fails_the_job_and_the_runner_reports_it(system):
    system.start_catalog()
    runner = system.start_runner(wait=True, MOCHI_MAX_RUN_S="8", MOCHI_HANG_GRACE_S="1", MOCHI_ACK_WAIT_S="4")
    system.start_api()
    # Watch /healthz from the start: the hang is reported only while the decode runs on.
    with watching_health(f"{runner.health_url}/healthz") as seen:
        job_id = _submit(system, {"prompt": "a slow decode", **LONG_DECODE})

        failed = wait_until(lambda: (j := _job(system, job_id))["status"] == "failed" and j, timeout=90,
                            what="the hung job failed")
        assert "did not stop" in failed["error"], failed["error"]
        # While the decode still ran in its thread, holding the lane: not alive.
        wait_until(lambda: any(code == 503 and "hung" in text for code, text in seen), timeout=30,
                   what="/healthz reporting the hung render")
        # Heartbeats stopped and the message was termed: never redelivered, one final event.
        time.sleep(6)  # past the ack wait
        finals = [m for m in system.events(f"mochi.jobs.{job_id}.>") if ".final." in m.subject]
        assert [m.type for m in finals] == ["failed"]
        assert [m.event.attempt for m in system.events(f"mochi.jobs.{job_id}.started")] == [1]
        # Once the thread returns the runner is whole again and renders the next job.
        # (The decode runs on: seconds alone, minutes on a loaded CI machine.)
        wait_until(lambda: seen and seen[-1][0] == 200 and any(c == 503 for c, _ in seen), timeout=300,
                   what="the runner alive again")
    # (It may itself run past the 8 s limit on a loaded machine: that it is
    # rendered and ended is what counts here.)
    follow = _submit(system, {"prompt": "a quick one", **SMALL, "num_inference_steps": 2})
    wait_until(lambda: _job(system, follow)["status"] in FINAL_STATUSES, timeout=120,
               what="the next job rendered")
    assert system.events(f"mochi.jobs.{follow}.started")


def test_a_deadline_that_passes_while_a_job_waits_for_its_lanes_expires_it(system):
    system.start_catalog()
    system.start_runner(wait=True, MOCHI_DEVICES="cpu,cpu")
    system.start_api()
    # A guidance-free job holds one lane for a while; a guided one, pulled
    # beside it, waits for both lanes past its deadline.
    # (Sized to outlast the deadline by far even on an idle machine: 120 steps at
    # 64x64 once ended within the 3 s, and the waiter then rendered.)
    holder = _submit(system, {"prompt": "holding a lane", **SMALL, "width": 128, "height": 128,
                              "num_frames": 25, "num_inference_steps": 200, "guidance_scale": 1.0})
    wait_until(lambda: _job(system, holder)["status"] == "running", timeout=60, what="the lane holder running")
    deadline = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    waiter = _submit(system, {"prompt": "waiting for both lanes", **SMALL, "guidance_scale": 4.5,
                              "deadline": deadline})
    ended = wait_until(lambda: (j := _job(system, waiter))["status"] in FINAL_STATUSES and j,
                       timeout=120, what="the waiting job ended")
    held = _job(system, holder)
    # The premise: the lane was still held when the deadline passed.
    assert (held["status"] == "running"
            or datetime.fromisoformat(held["finished_at"]) > datetime.fromisoformat(deadline)), held
    assert ended["status"] == "expired", ended
    assert not system.events(f"mochi.jobs.{waiter}.started"), "it touched a GPU"


def test_a_stop_while_the_model_loads_ends_the_runner_at_once(system):
    system.start_catalog()
    # A first start builds nothing here (the tiny model exists); a slow load is
    # made by warming up at a size whose render takes seconds on the CPU.
    runner = system.start_runner(MOCHI_WARMUP_WIDTH="256", MOCHI_WARMUP_HEIGHT="256", MOCHI_WARMUP_FRAMES="61")
    def answers() -> bool:
        try:
            return httpx.get(f"{runner.health_url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False  # still importing torch

    wait_until(answers, timeout=60, what="the runner's health port up while it loads")
    assert httpx.get(f"{runner.health_url}/readyz", timeout=2).status_code == 503
    sent = time.monotonic()
    runner.popen.send_signal(signal.SIGTERM)
    code = runner.popen.wait(timeout=15)
    assert time.monotonic() - sent < 10
    assert code == 0


def _records(proc) -> list[dict]:
    """The runner's JSON log lines, in order (a line still being written is skipped)."""
    out = []
    for line in proc.log().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _first(records: list[dict], event: str, **fields: object) -> int | None:
    """The index of the first record of `event` with these fields, or None."""
    return next((i for i, r in enumerate(records)
                 if r.get("event") == event and all(r.get(k) == v for k, v in fields.items())), None)


def _runner_jobs_in_hand(system) -> int:
    async def ask() -> int:
        nc = await nats.connect(system.nats_url)
        try:
            info = await nc.jetstream().consumer_info(JOBS_STREAM, RUNNERS_CONSUMER)
            return info.num_ack_pending
        finally:
            await nc.close()

    return asyncio.run(ask())


def _finals(system, job_id: str) -> list[str]:
    return [m.type for m in system.events(f"mochi.jobs.{job_id}.final.>")]


def test_a_last_attempt_that_fails_while_nats_is_away_is_contained_and_the_job_ends_once(system):
    # Only the runner reaches NATS through the proxy: the API and catalog keep
    # reading the stream while the runner's connection is cut.
    proxy = TcpProxy(system.nats_port)
    proxy.up()
    system.start_catalog()
    # Two lanes: a guidance-free job holds one while a guided one, pulled beside
    # it, waits for both. Every delivery is the last (MAX_DELIVER=1), and the
    # ack wait outlasts the outage, so JetStream gives up on nothing meanwhile.
    runner = system.start_runner(wait=True, MOCHI_NATS_URL=f"nats://127.0.0.1:{proxy.port}",
                                 MOCHI_DEVICES="cpu,cpu", MOCHI_MAX_DELIVER="1", MOCHI_ACK_WAIT_S="900",
                                 MOCHI_PUBLISH_PATIENCE_S=str(PATIENCE_S),
                                 MOCHI_PREVIEW_EVERY_S="0", MOCHI_CHECKPOINT_WAIT_S="2")
    system.start_api()
    holder = _submit(system, {"prompt": "holding a lane", **LONG_DECODE, "guidance_scale": 1.0})
    wait_until(lambda: _job(system, holder)["status"] == "running", timeout=120, what="the lane holder running")
    waiter = _submit(system, {"prompt": "waiting for both lanes", **SMALL, "num_inference_steps": 2,
                              "guidance_scale": 4.5})
    wait_until(lambda: _runner_jobs_in_hand(system) == 2, timeout=60, what="the guided job pulled")
    proxy.down()
    # The premise: the waiter was still waiting for its lanes when NATS went
    # away, so its attempt (its started event, then its failure's log line and
    # final event) meets the outage; the holder's render still ran.
    records = _records(runner)
    assert _first(records, "job.rendered", job_id=holder) is None, "the holder's render ended before the cut"
    assert _first(records, "job.started", job_id=waiter) is None, "the waiter started before the cut"

    # NATS stays away until the runner has given up recording the failure
    # (each of its publishes is patient for PATIENCE_S, MOCHI_PUBLISH_PATIENCE_S), or
    # until an error escaped the job's handler into the consumer runtime.
    health: list[int] = []

    def escaped(records: list[dict]) -> list[dict]:
        return [r for r in records if r.get("consumer") == "runner-jobs"
                and r.get("event") in ("consumer.nats_away", "consumer.handler_failed")]

    def failure_handled() -> bool:
        assert runner.alive(), "the runner died during the outage"
        try:
            health.append(httpx.get(f"{runner.health_url}/healthz", timeout=10).status_code)
        except httpx.TransportError:
            health.append(0)  # a loaded machine; alive() says whether it died
        records = _records(runner)
        return _first(records, "job.failure_not_recorded", job_id=waiter) is not None or bool(escaped(records))

    wait_until(failure_handled, timeout=600, every=1.0, what="the runner giving up on recording the failure")
    records = _records(runner)
    down = _first(records, "nats.disconnected")
    failed = _first(records, "job.attempt_failed", job_id=waiter)
    assert down is not None and failed is not None and down < failed, "the attempt did not fail during the outage"
    assert records[failed]["final"] is True and records[failed]["attempt"] == 1, records[failed]
    assert _first(records, "nats.reconnected") is None, "NATS came back before the failure's publishes"
    # _failed contained its own publishes' failure: nothing left the handler.
    assert not escaped(records), escaped(records)
    assert _first(records, "job.failure_not_recorded", job_id=waiter) is not None
    assert 200 in health and set(health) <= {200, 0}, health  # alive throughout, never reported unhealthy
    proxy.up()

    # Once NATS is back the runner is ready again and nothing it did is lost or doubled.
    def ready() -> bool:
        try:
            return httpx.get(f"{runner.health_url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=60, what="the runner ready again")
    assert httpx.get(f"{runner.health_url}/healthz", timeout=5).status_code == 200
    ended = wait_until(lambda: (j := _job(system, waiter))["status"] in FINAL_STATUSES and j, timeout=120,
                       what="the failed job ended")
    assert ended["status"] == "failed", ended
    # The runner's nak reached JetStream with the delivery already the last:
    # the max-deliveries advisory comes to the dead-letter handler, which finds
    # the job final (the runner's buffered publishes landed) or ends it itself.
    wait_until(lambda: _first(_records(runner), "dead_letter.job_failed", job_id=waiter) is not None,
               timeout=120, what="the dead-letter handler seeing the job's advisory")
    assert _finals(system, waiter) == ["failed"]
    # The holder rode the outage out: its progress events that could not be
    # published were logged and skipped (once a TypeError in that log call
    # failed the job), and its final event went out after NATS came back.
    held = wait_until(lambda: (j := _job(system, holder))["status"] in FINAL_STATUSES and j, timeout=300,
                      what="the holder ended")
    assert held["status"] == "completed", held
    assert _finals(system, holder) == ["completed"]
    # And it renders the next job.
    follow = _submit(system, {"prompt": "a quick one", **SMALL, "num_inference_steps": 2})
    done = wait_until(lambda: (j := _job(system, follow))["status"] in FINAL_STATUSES and j, timeout=180,
                      what="the next job rendered")
    assert done["status"] == "completed", done
    assert runner.alive()

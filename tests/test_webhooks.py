"""Webhooks through a real receiver on loopback: signed (Standard Webhooks),
retried with backoff under one webhook-id, recorded on the job, durable across
a dispatcher killed mid-delivery; private targets refused at submit."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest
from standardwebhooks import Webhook

from conftest import SMALL, WEBHOOK_SECRET
from mochi_cli.client import ApiError, verify_webhook
from mochi_contracts.resources import Webhook as JobWebhook
from webhook_receiver import Receiver
from waits import wait_until

FAST_RETRIES = {"MOCHI_WEBHOOK_RETRY_FIRST_DELAY_S": "0.4", "MOCHI_WEBHOOK_RETRY_MAX_DELAY_S": "5"}


@pytest.fixture
def receiver():
    r = Receiver(fail_first=2).start()
    yield r
    r.stop()


def attempts_of(system, job_id: str) -> list:
    return [m.event for m in system.events(f"mochi.jobs.{job_id}.webhook.>")]


def test_webhook_retried_then_delivered_signed_with_one_id(stack, receiver):
    dispatcher = stack.start_webhooks(**FAST_RETRIES)
    client = stack.client()
    job = client.submit("a cat walks on the grass", webhook_url=receiver.url, **SMALL)
    assert job.webhook == JobWebhook(url=receiver.url, events=["completed", "failed", "cancelled", "expired"],
                                  deliveries=[])
    assert client.wait(job.id, timeout=120).status == "completed"
    wait_until(lambda: receiver.successes(), timeout=60, what="a successful delivery")

    got = receiver.requests
    assert [r.status for r in got] == [503, 503, 200]
    # One delivery: the same webhook-id on every try, each try signed afresh.
    ids = {r.headers["webhook-id"] for r in got}
    assert len(ids) == 1
    for r in got:
        body = Webhook(WEBHOOK_SECRET).verify(r.body, r.headers)
        assert body == verify_webhook(WEBHOOK_SECRET, r.body, r.headers)
    body = json.loads(got[-1].body)
    assert body["type"] == "job.completed" and body["data"]["job_id"] == job.id
    assert body["data"]["status"] == "completed" and body["data"]["event"]["video"]["size_bytes"] > 0
    # Spaced by exponential backoff with jitter (half fixed, half random): 0.4 s, then 0.8 s.
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps

    # Every attempt is recorded on the job's stream; exactly one success.
    records = wait_until(lambda: (a := attempts_of(stack, job.id)) and a[-1].outcome == "delivered" and a,
                         timeout=30, what="records")
    assert [(a.attempt, a.outcome, a.status_code) for a in records] == [
        (1, "retrying", 503), (2, "retrying", 503), (3, "delivered", 200)]
    assert {a.delivery_id for a in records} == ids
    waits = [(a.next_attempt_at - a.time).total_seconds() for a in records[:2]]
    assert 0.2 <= waits[0] <= 0.4 + 0.05 and 0.4 <= waits[1] <= 0.8 + 0.05, waits
    # And the job shows where its delivery stands.
    shown = wait_until(lambda: (d := client.get(job.id).webhook.deliveries) and
                       d[0].status == "delivered" and d, timeout=30, what="delivery state")
    assert shown[0].attempts == 3 and shown[0].event_type == "completed"
    assert shown[0].id == ids.pop() and shown[0].last_status_code == 200
    scraped = httpx.get(f"{dispatcher.health_url}/metrics").text
    assert 'mochi_webhooks_attempts_total{outcome="retrying"} 2.0' in scraped
    assert 'mochi_webhooks_attempts_total{outcome="delivered"} 1.0' in scraped


def test_filter_and_progress_throttle(stack):
    receiver = Receiver().start()
    try:
        stack.start_webhooks()
        client = stack.client()
        # By name: the dispatcher resolves it, checks the addresses and connects to those.
        job = client.submit("waves crash on rocks", webhook_url=receiver.url.replace("127.0.0.1", "localhost"),
                            webhook_events=["started", "progress", "completed"],
                            **{**SMALL, "num_inference_steps": 40})
        client.wait(job.id, timeout=120)
        wait_until(lambda: any(json.loads(r.body)["type"] == "job.completed" for r in receiver.requests),
                   timeout=60, what="completed webhook")
        types = [json.loads(r.body)["type"] for r in receiver.requests]
        hosts = {v for r in receiver.requests for k, v in r.headers.items() if k.lower() == "host"}
        assert len(hosts) == 1 and hosts.pop().startswith("localhost:")
        assert types[0] == "job.started" and "job.completed" in types
        progress = [json.loads(r.body)["data"]["event"] for r in receiver.requests
                    if json.loads(r.body)["type"] == "job.progress"]
        assert progress, types
        times = sorted(p["time"] for p in progress)
        from datetime import datetime
        stamps = [datetime.fromisoformat(t) for t in times]
        assert all((b - a).total_seconds() >= 1.0 for a, b in itertools.pairwise(stamps)), times
        # 40 steps, far fewer progress webhooks than steps.
        assert len(progress) < 40
    finally:
        receiver.stop()


def test_client_error_is_not_retried(stack):
    receiver = Receiver(fail_first=100, fail_status=410).start()
    try:
        stack.start_webhooks(**FAST_RETRIES)
        client = stack.client()
        job = client.submit("a bird flies", webhook_url=receiver.url, **SMALL)
        client.wait(job.id, timeout=120)
        records = wait_until(lambda: attempts_of(stack, job.id), timeout=60, what="one attempt")
        assert [(a.outcome, a.status_code) for a in records] == [("failed", 410)]
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()


def test_dispatcher_killed_mid_delivery_delivers_after_restart(stack):
    # The receiver holds the first request; the dispatcher dies while it waits.
    receiver = Receiver(hold_first_s=3.0).start()
    try:
        settings = {**FAST_RETRIES, "MOCHI_WEBHOOK_ACK_WAIT_S": "4", "MOCHI_WEBHOOK_TIMEOUT_S": "2.5"}
        dispatcher = stack.start_webhooks(**settings)
        client = stack.client()
        job = client.submit("a person dances", webhook_url=receiver.url, **SMALL)
        client.wait(job.id, timeout=120)
        assert receiver.first_arrived.wait(60)
        dispatcher.kill()
        assert attempts_of(stack, job.id) == []  # nothing recorded: it died mid-try
        stack.start_webhooks(name="webhooks-2", **settings)
        records = wait_until(lambda: (a := attempts_of(stack, job.id)) and a[-1].outcome == "delivered" and a,
                             timeout=60, what="delivered after restart")
        assert [a.outcome for a in records].count("delivered") == 1
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
        # A second restart finds the recorded success and sends nothing more.
        stack.procs[-1].stop()
        seen = len(receiver.requests)
        stack.start_webhooks(name="webhooks-3", **settings)
        import time
        time.sleep(6)
        assert len(receiver.requests) == seen
        assert [a.outcome for a in attempts_of(stack, job.id)].count("delivered") == 1
    finally:
        receiver.stop()


def test_private_webhook_url_refused_at_submit(system):
    system.start_api(MOCHI_WEBHOOK_ALLOW_LOOPBACK="false")
    client = system.client()
    for url in ["http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data", "http://192.168.0.10:8080/x",
                "http://[fd00::1]/x", "http://[::ffff:10.0.0.1]/x", "http://127.0.0.1:9/x", "http://localhost:9/x",
                "ftp://example.com/x"]:
        with pytest.raises(ApiError) as err:
            client.submit("a cat", webhook_url=url, **SMALL)
        assert err.value.status == 422, url
        assert "webhook_url" in err.value.field_errors, (url, err.value.problem)
    with pytest.raises(ApiError) as err:
        client.submit("a cat", webhook_events=["completed"], **SMALL)
    assert "webhook_events" in err.value.field_errors

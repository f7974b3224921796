"""Webhook delivery against hostile receivers and targets: a try has a total
deadline (a receiver that trickles its answer is cut and frees its sender slot),
only the first bytes of an answer are read, and only globally routable
addresses are reached unless the settings open loopback or private networks,
refused at submit by the API and again before a try by the dispatcher."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

import httpx
import nats
import pytest
from standardwebhooks import Webhook

from conftest import SMALL, WEBHOOK_SECRET
from mochi_cli.client import ApiError, MochiClient
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import JobSubmitted
from mochi_contracts.jobs import JobRequest
from mochi_contracts.streams import JOBS_STREAM
from mochi_webhooks.delivery import Delivery, try_once
from waits import wait_until
from webhook_receiver import RawReceiver, Receiver

FAST_RETRIES = {"MOCHI_WEBHOOK_RETRY_FIRST_DELAY_S": "0.4", "MOCHI_WEBHOOK_RETRY_MAX_DELAY_S": "5"}


def _delivery(url: str) -> Delivery:
    now = datetime.now(timezone.utc)
    return Delivery(id="msg_test_1", job_id="a" * 32, seq=1, event_type="completed", url=url,
                    event_time=now, created_at=now, body='{"type": "job.completed"}')


@pytest.fixture
def trickle():
    r = RawReceiver("trickle").start()
    yield r
    r.stop()


async def test_trickled_answer_is_cut_at_the_deadline(trickle):
    # Each read gets a byte within a second, so a per-read timeout of 3 s never fires.
    async with httpx.AsyncClient(timeout=3.0, trust_env=False) as http:
        result = await asyncio.wait_for(try_once(http, Webhook(WEBHOOK_SECRET), _delivery(trickle.url),
                                                 ["127.0.0.1"], deadline_s=2.5, max_response_bytes=65536), 15)
    assert result.outcome == "retry" and result.status_code is None
    assert result.error is not None and result.error.startswith("timeout"), result
    assert 2400 <= result.duration_ms < 4000, result
    answer = wait_until(lambda: trickle.answers and trickle.answers[0].closed_at and trickle.answers[0],
                        timeout=5, what="the sender to hang up")
    assert answer.body_bytes_sent >= 2  # it was trickling, not silent
    assert answer.closed_at - answer.opened_at < 2.5 + 1.0


async def test_huge_answer_is_read_only_up_to_the_cap():
    flood = RawReceiver("flood", body_bytes=2 << 30).start()
    try:
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
            result = await try_once(http, Webhook(WEBHOOK_SECRET), _delivery(flood.url), ["127.0.0.1"],
                                    deadline_s=60, max_response_bytes=65536)
        assert (result.outcome, result.status_code) == ("delivered", 200), result
        assert time.monotonic() - started < 5
        answer = wait_until(lambda: flood.answers and flood.answers[0].closed_at and flood.answers[0],
                            timeout=10, what="the sender to hang up")
        # The 2 GiB body was cut after the cap; what was sent beyond it sat in socket buffers.
        assert answer.body_bytes_sent < 64 << 20, answer
    finally:
        flood.stop()


async def _answer_once(head: bytes):  # noqa: ANN202
    """A loopback server answering every request with `head` and no body."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + b"content-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


@pytest.mark.parametrize(("retry_after", "seconds"), [
    (b"7", 7.0), (b"\xb2", None), (b"\xd9\xa1", None), (b"9" * 5000, None), (b"1e3", None), (b"-5", None),
    (b"Wed, 21 Oct 2015 07:28:00 GMT", None)])
async def test_a_receivers_retry_after_is_read_as_ascii_seconds_or_ignored(retry_after, seconds):
    # A hostile Retry-After must leave a retry with the dispatcher's own backoff, not raise out of the try.
    server = await _answer_once(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: " + retry_after + b"\r\n")
    try:
        port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            result = await try_once(http, Webhook(WEBHOOK_SECRET), _delivery(f"http://127.0.0.1:{port}/hook"),
                                    ["127.0.0.1"], deadline_s=10, max_response_bytes=65536)
    finally:
        server.close()
    assert (result.outcome, result.status_code, result.retry_after_s) == ("retry", 503, seconds), result


def attempts_of(system, job_id: str) -> list:
    return [m.event for m in system.events(f"mochi.jobs.{job_id}.webhook.>")]


def test_trickling_receiver_frees_its_sender_slot(stack, trickle):
    good = Receiver().start()
    try:
        # One sender slot: without a total deadline the trickle would hold it for ever.
        stack.start_webhooks(MOCHI_WEBHOOK_CONCURRENCY="1", MOCHI_WEBHOOK_TIMEOUT_S="2", **FAST_RETRIES)
        client = stack.client()
        slow = client.submit("a snail crawls", webhook_url=trickle.url, **SMALL)
        assert client.wait(slow.id, timeout=120).status == "completed"
        wait_until(lambda: trickle.requests, timeout=60, what="the trickling receiver's first request")
        fast = client.submit("a hare runs", webhook_url=good.url, **SMALL)
        assert client.wait(fast.id, timeout=120).status == "completed"
        wait_until(lambda: good.successes(), timeout=60, what="the good receiver's delivery")

        records = wait_until(lambda: attempts_of(stack, slow.id), timeout=30, what="the trickle's attempts")
        first = records[0]
        assert first.outcome == "retrying" and first.error.startswith("timeout"), first
        assert 1900 <= first.duration_ms < 3500, first
        first_answer = trickle.answers[0]
        assert first_answer.closed_at is not None and first_answer.closed_at - first_answer.opened_at < 3.5
        assert [a.outcome for a in attempts_of(stack, fast.id)] == ["delivered"]
    finally:
        good.stop()


def test_dispatcher_refuses_non_global_targets_before_a_try(system):
    # The API lets private targets through; this dispatcher does not.
    system.start_catalog()
    system.start_runner()
    system.start_api(MOCHI_WEBHOOK_ALLOW_PRIVATE="true")
    system.start_webhooks()
    client = system.client()
    cgnat = client.submit("a cat", webhook_url="http://100.64.0.1:9/hook", **SMALL)

    # A publisher that skips the API altogether, with a target no setting opens.
    foreign_id = uuid.uuid4().hex

    async def publish() -> None:
        nc = await nats.connect(system.nats_url)
        body, headers = encode_event(JobSubmitted(
            job_id=foreign_id, owner="anonymous",
            request=JobRequest(prompt="a dog", seed=7, webhook_url="http://198.18.0.1/hook", **SMALL)))
        await nc.jetstream().publish(subjects.event_subject(foreign_id, "submitted"), body, headers=headers,
                                     stream=JOBS_STREAM)
        await nc.close()

    asyncio.run(publish())
    for job_id, reason in [(cgnat.id, "refused: 100.64.0.1 is a private address"),
                           (foreign_id, "refused: 198.18.0.1 is not a globally routable address")]:
        assert client.wait(job_id, timeout=120).status == "completed"
        records = wait_until(lambda job_id=job_id: attempts_of(system, job_id), timeout=60, what=f"{job_id}'s attempt")
        assert [(a.outcome, a.status_code, a.error, a.duration_ms) for a in records] == [
            ("failed", None, reason, 0)]


# Refused whatever the settings say, and as IPv6 forms that reach them.
NEVER = ["http://169.254.169.254/latest/meta-data", "http://192.0.0.1/x", "http://198.18.0.1/x",
         "http://198.19.255.254/x", "http://224.0.0.1/x", "http://239.255.255.250:1900/x", "http://240.0.0.1/x",
         "http://255.255.255.255/x", "http://0.0.0.0:8000/x", "http://192.0.2.1/x", "http://[fe80::1]/x",
         "http://[ff02::1]/x", "http://[::]/x", "http://[2001:db8::1]/x", "http://[::ffff:169.254.169.254]/x",
         "http://[::ffff:198.18.0.1]/x", "http://[64:ff9b::7f00:1]/x", "http://[2002:a00:1::]/x"]
# Refused unless MOCHI_WEBHOOK_ALLOW_PRIVATE.
PRIVATE = ["http://100.64.0.1/x", "http://100.127.255.254/x", "http://[::ffff:100.64.0.1]/x",
           "http://172.16.0.1/x", "http://[fd12::1]/x"]


def _refused(client: MochiClient, url: str) -> bool:
    try:
        client.submit("a cat", webhook_url=url, **SMALL)
    except ApiError as err:
        assert err.status == 422, (url, err.problem)
        assert "webhook_url" in err.field_errors, (url, err.problem)
        return True
    return False


def test_non_global_targets_refused_at_submit(system):
    system.start_api(MOCHI_WEBHOOK_ALLOW_LOOPBACK="false")
    closed = system.client()
    system.start_api(name="api-open", MOCHI_WEBHOOK_ALLOW_LOOPBACK="true", MOCHI_WEBHOOK_ALLOW_PRIVATE="true")
    opened = system.client()
    for url in NEVER:
        assert _refused(closed, url) and _refused(opened, url), url
    for url in PRIVATE:
        assert _refused(closed, url), url
        assert not _refused(opened, url), url

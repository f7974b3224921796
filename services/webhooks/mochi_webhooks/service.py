"""The dispatcher process. Three loops, each on its own durable consumer:

planner   job stream -> dispatch stream: for each job event a webhook wants, one
          delivery (create-if-absent, so a redelivered event never makes a
          second); for each submission with a deadline, one timer. The job
          event is acked only once that is stored, so a crash loses nothing.
sender    dispatch stream -> receivers: one try per handout, each try recorded
          on the job (`mochi.jobs.<id>.webhook.<seq>`) before the delivery is
          acked (done) or nak'ed with its backoff (retry). A recorded success or
          give-up is checked before each try, so a redelivery after a crash never
          records a second success.
deadlines dispatch stream: a timer nak'ed until its deadline, then the job is
          expired (create-if-absent final event) unless it started meanwhile.

Nothing here is in the API's request path or the catalog's projection."""

from __future__ import annotations

import asyncio
import functools
import signal
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from standardwebhooks import Webhook

from mochi_common.consumer import ACK, DurableConsumer, Nak, Outcome, Term
from mochi_common.event_intake import read_event
from mochi_common.health_server import serve_health
from mochi_common.jetstream_setup import ensure_dispatcher_topology
from mochi_common.logs import configure_logging
from mochi_common.nats_conn import Reconnects, connect, last_event, publish_final, publish_guarded
from mochi_common.settings import SettingsError, load_settings
from mochi_common.supervise import Supervisor
from mochi_common.webhook_targets import checked_addresses
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import HDR_MSG_ID, JobExpired, JobSubmitted, WebhookAttempt, event_type, utcnow
from mochi_contracts.jobs import JobRequest
from mochi_contracts.streams import (
    DEADLINE_CONSUMER, DISPATCH_STREAM, DISPATCHER_CONSUMER, JOBS_STREAM, WEBHOOK_SENDER_CONSUMER)
from mochi_webhooks import metrics
from mochi_webhooks.delivery import DeadlineTimer, Delivery, backoff_s, make_delivery, try_once
from mochi_webhooks.settings import WebhooksSettings

log = structlog.get_logger()
_encode = msgspec.json.Encoder().encode
_decode_delivery = msgspec.json.Decoder(Delivery).decode
_decode_timer = msgspec.json.Decoder(DeadlineTimer).decode
# Deadlines further out are looked at again after this long (a nak's delay is kept by the server).
_MAX_TIMER_WAIT_S = 3600.0


async def _create(js: Any, subject: str, body: bytes, msg_id: str) -> bool:
    """Store a message unless the subject already holds one (for as long as the
    dispatch stream keeps it, not only the duplicate window)."""
    return await publish_guarded(js, DISPATCH_STREAM, subject, body, {HDR_MSG_ID: msg_id}) is not None


class Dispatcher:
    def __init__(self, settings: WebhooksSettings, nc: Client, reconnects: Reconnects):
        self.settings = settings
        self.nc = nc
        self.reconnects = reconnects
        self.js = nc.jetstream()
        self.signer = Webhook(settings.webhook_secret)
        # Redirects are never followed: a 3xx is an answer, not a new address.
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=settings.webhook_timeout_s,
                                      trust_env=False)
        self.stop = asyncio.Event()
        # job id -> its request, so a job's many progress events cost one lookup.
        self._requests: OrderedDict[str, JobRequest | None] = OrderedDict()

    async def _request_of(self, job_id: str) -> JobRequest | None:
        if job_id in self._requests:
            self._requests.move_to_end(job_id)
            return self._requests[job_id]
        submitted = await last_event(self.js, subjects.event_subject(job_id, "submitted"))
        request = submitted.event.request if submitted and isinstance(submitted.event, JobSubmitted) else None
        self._requests[job_id] = request
        while len(self._requests) > 10_000:
            self._requests.popitem(last=False)
        return request

    # ---- planner ---------------------------------------------------------

    async def plan(self, msg: Msg) -> Outcome:
        event = read_event("webhook-planner", msg.subject, msg.data, msg.headers, msg.metadata.sequence.stream)
        if event is None:
            return ACK  # refused at the boundary, counted and logged there: nothing to tell of
        seq = msg.metadata.sequence.stream
        if isinstance(event, JobSubmitted):
            if event.request.deadline is not None:
                timer = DeadlineTimer(job_id=event.job_id, deadline=event.request.deadline)
                await _create(self.js, subjects.deadline_timer(event.job_id), _encode(timer),
                              f"{event.job_id}:deadline")
            return ACK
        kind = event_type(event)
        request = await self._request_of(event.job_id)
        if request is None or request.webhook_url is None or not request.webhook_wants(kind):
            return ACK
        if (utcnow() - event.time).total_seconds() > self.settings.webhook_retry_window_s:
            # Older than any retry would go on for (a consumer made afresh reads
            # the stream from its start): telling of it now would only mislead.
            log.info("webhook.too_old", job_id=event.job_id, event_type=kind)
            return ACK
        if kind == "progress" and await self._too_soon(event.job_id, event.time):
            return ACK
        delivery = make_delivery(event, seq, request.webhook_url, self.settings.public_url)
        if await _create(self.js, subjects.webhook_delivery(event.job_id, kind, seq), _encode(delivery),
                         delivery.id):
            metrics.PLANNED.labels(kind).inc()
            log.info("webhook.planned", job_id=event.job_id, delivery_id=delivery.id, event_type=kind)
        return ACK

    async def _too_soon(self, job_id: str, time: datetime) -> bool:
        """At most one progress webhook a second per job, by the events' own
        times, read from the stored deliveries (so it holds across restarts)."""
        try:
            raw = await self.js.get_last_msg(DISPATCH_STREAM, subjects.job_webhook_deliveries(job_id, "progress"),
                                             direct=True)
        except NotFoundError:
            return False
        try:
            last = _decode_delivery(raw.data or b"")
        except msgspec.MsgspecError:
            return False  # an unreadable earlier delivery holds back no progress webhook
        return (time - last.event_time).total_seconds() < self.settings.webhook_progress_interval_s


    # ---- sender ----------------------------------------------------------

    async def send(self, msg: Msg) -> Outcome:
        try:
            delivery = _decode_delivery(msg.data)
        except msgspec.MsgspecError as err:
            return Term(f"unreadable delivery: {err}")
        if msg.subject != subjects.webhook_delivery(delivery.job_id, delivery.event_type, delivery.seq):
            return Term("a delivery whose body does not match its subject")
        subject = subjects.webhook_attempts(delivery.job_id, delivery.seq)
        last_seq, attempt = 0, 1
        try:
            raw = await self.js.get_last_msg(JOBS_STREAM, subject, direct=True)
        except NotFoundError:
            raw = None
        if raw is not None:
            recorded = read_event("webhook-sender", raw.subject or subject, raw.data, raw.headers, raw.seq)
            if not isinstance(recorded, WebhookAttempt):
                # Someone else's bytes on this delivery's record subject: the
                # record cannot be trusted, so this delivery ends rather than
                # guess its attempt count (the refusal is counted and logged).
                return Term(f"the attempt record at {raw.seq} is unreadable")
            if recorded.outcome != "retrying":
                return ACK  # delivered or given up before a crash: nothing more to do
            assert raw.seq is not None  # a message read back from the stream has its sequence
            last_seq, attempt = raw.seq, recorded.attempt + 1
        bound = log.bind(job_id=delivery.job_id, delivery_id=delivery.id, attempt=attempt)
        refused, addresses = await checked_addresses(delivery.url, self.settings.webhook_allow_loopback,
                                                     self.settings.webhook_allow_private)
        code: int | None
        error: str | None
        retry_after: float | None
        if refused is not None and "does not resolve" in refused:
            # DNS may be down for a moment: a retry, like a connection error.
            outcome, code, error, duration, retry_after = "retry", None, refused, 0, None
        elif refused is not None:
            outcome, code, error, duration, retry_after = "failed", None, f"refused: {refused}", 0, None
        else:
            result = await try_once(self.http, self.signer, delivery, addresses,
                                    deadline_s=self.settings.webhook_timeout_s,
                                    max_response_bytes=self.settings.webhook_max_response_bytes)
            outcome, code, error, duration, retry_after = (
                result.outcome, result.status_code, result.error, result.duration_ms, result.retry_after_s)
        delay = None
        now = utcnow()
        if outcome == "retry":
            delay = backoff_s(attempt, self.settings.webhook_retry_first_delay_s,
                              self.settings.webhook_retry_max_delay_s, retry_after)
            window_end = delivery.created_at + timedelta(seconds=self.settings.webhook_retry_window_s)
            if now + timedelta(seconds=delay) > window_end:
                outcome, delay = "failed", None
                error = f"{error}; gave up after {attempt} attempts over {self.settings.webhook_retry_window_s:g}s"
        record = WebhookAttempt(
            job_id=delivery.job_id, time=now, delivery_id=delivery.id, event_type=delivery.event_type,
            attempt=attempt,
            # try_once's outcome is a str, one of delivered|retry|failed; retry is recorded as retrying.
            outcome="retrying" if outcome == "retry" else outcome,  # type: ignore[arg-type]  # see above
            status_code=code, error=error, duration_ms=duration,
            next_attempt_at=now + timedelta(seconds=delay) if delay is not None else None)
        body, headers = encode_event(record)
        headers[HDR_MSG_ID] = f"{delivery.id}:{attempt}"
        # Exactly one record per attempt number, in order: a second sender of the
        # same delivery (after an ack-wait expiry) loses here and looks again.
        if await publish_guarded(self.js, JOBS_STREAM, subject, body, headers, last_seq=last_seq) is None:
            bound.info("webhook.recorded_elsewhere")
            return Nak(1.0)
        metrics.ATTEMPTS.labels(record.outcome).inc()
        if duration:
            metrics.ATTEMPT_SECONDS.observe(duration / 1000)
        bound.info("webhook.attempt", outcome=record.outcome, status_code=code, error=error,
                   retry_in_s=round(delay, 2) if delay is not None else None)
        return ACK if delay is None else Nak(delay)

    # ---- deadlines -------------------------------------------------------

    async def expire(self, msg: Msg) -> Outcome:
        try:
            timer = _decode_timer(msg.data)
        except msgspec.MsgspecError as err:
            return Term(f"unreadable deadline timer: {err}")
        if msg.subject != subjects.deadline_timer(timer.job_id):
            return Term("a deadline timer whose body does not match its subject")
        left = (timer.deadline - utcnow()).total_seconds()
        if left > 0:
            return Nak(min(left, _MAX_TIMER_WAIT_S))
        if (await last_event(self.js, subjects.job_final(timer.job_id)) is None
                and await last_event(self.js, subjects.event_subject(timer.job_id, "started")) is None):
            seq = await publish_final(self.js, JobExpired(
                job_id=timer.job_id, reason=f"not started by its deadline {timer.deadline.isoformat()}"))
            if seq is not None:
                metrics.EXPIRED.inc()
                log.info("job.expired", job_id=timer.job_id, deadline=timer.deadline.isoformat())
        return ACK

    def consumers(self) -> dict[str, tuple[DurableConsumer, Callable[[Msg], Awaitable[Outcome]]]]:
        """The three loops, each on its own durable consumer. The sender handles
        up to webhook_concurrency tries at once, a slot refilled as soon as one
        ends, so a slow receiver never holds up the others."""
        def consumer(stream: str, durable: str, label: str, **kw: Any) -> DurableConsumer:
            return DurableConsumer(self.js, stream, durable, label=label, reconnects=self.reconnects, **kw)

        return {
            "planner": (consumer(JOBS_STREAM, DISPATCHER_CONSUMER, "webhook-planner", batch=64), self.plan),
            "sender": (consumer(DISPATCH_STREAM, WEBHOOK_SENDER_CONSUMER, "webhook-sender",
                                concurrency=self.settings.webhook_concurrency,
                                batch=self.settings.webhook_concurrency), self.send),
            "deadlines": (consumer(DISPATCH_STREAM, DEADLINE_CONSUMER, "webhook-deadlines", batch=64), self.expire),
        }


async def run(settings: WebhooksSettings) -> None:
    if not settings.webhook_secret:
        raise SettingsError("MOCHI_WEBHOOK_SECRET is required: a Standard Webhooks secret, whsec_<base64>")
    reconnects = Reconnects()
    nc = await connect(settings.nats_url, name="mochi-webhooks", reconnects=reconnects)
    js = nc.jetstream()
    await ensure_dispatcher_topology(js, settings.jetstream(),
                                     settings.dispatch_max_age_s, settings.webhook_ack_wait_s)
    dispatcher = Dispatcher(settings, nc, reconnects)
    supervisor = Supervisor()
    if settings.health_port:
        await serve_health(settings.health_host, settings.health_port,
                           lambda: nc.is_connected and not dispatcher.stop.is_set() and supervisor.healthy(),
                           not_ready=supervisor.unhealthy)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatcher.stop.set)
    # A loop that fails is restarted (and reported by /readyz meanwhile); one
    # bad message never gets that far: the consumer runtime contains it.
    for name, (consumer, handle) in dispatcher.consumers().items():
        supervisor.start(name, functools.partial(consumer.run, handle, dispatcher.stop))
    log.info("webhooks.ready")
    await dispatcher.stop.wait()
    await supervisor.stop(timeout_s=15)
    await dispatcher.http.aclose()
    await nc.drain()
    log.info("webhooks.stopped")


def main() -> None:
    settings = load_settings(WebhooksSettings)
    configure_logging("webhooks", settings.log_level)
    asyncio.run(run(settings))

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
import signal
from collections import OrderedDict
from datetime import timedelta

import httpx
import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NotFoundError
from standardwebhooks import Webhook

from mochi_common.health_server import serve_health
from mochi_common.logs import configure_logging
from mochi_common.nats_conn import WRONG_LAST_SEQUENCE, connect, last_event, publish_final
from mochi_common.settings import SettingsError, load_settings
from mochi_common.webhook_targets import checked_addresses
from mochi_contracts import subjects
from mochi_contracts.events import (
    HDR_MSG_ID, JobExpired, JobSubmitted, WebhookAttempt, event_type, utcnow)
from mochi_contracts.event_codec import UnreadableEvent, decode_event, encode_event
from mochi_contracts.jobs import JobRequest
from mochi_contracts.streams import (
    DEADLINE_CONSUMER, DISPATCH_STREAM, DISPATCHER_CONSUMER, JOBS_STREAM, WEBHOOK_SENDER_CONSUMER,
    JetStreamSettings)
from mochi_common.jetstream_setup import ensure_dispatcher_topology
from mochi_webhooks import metrics
from mochi_webhooks.delivery import DeadlineTimer, Delivery, backoff_s, make_delivery, try_once
from mochi_webhooks.settings import WebhooksSettings

log = structlog.get_logger()
_encode = msgspec.json.Encoder().encode
_decode_delivery = msgspec.json.Decoder(Delivery).decode
_decode_timer = msgspec.json.Decoder(DeadlineTimer).decode
# Deadlines further out are looked at again after this long (a nak's delay is kept by the server).
_MAX_TIMER_WAIT_S = 3600.0


async def _create(js, subject: str, body: bytes, msg_id: str) -> bool:  # type: ignore[no-untyped-def]
    """Store a message unless the subject already holds one (for as long as the
    dispatch stream keeps it, not only the duplicate window)."""
    try:
        ack = await js.publish(subject, body, stream=DISPATCH_STREAM, headers={
            HDR_MSG_ID: msg_id, "Nats-Expected-Last-Subject-Sequence": "0"})
    except APIError as err:
        if err.err_code == WRONG_LAST_SEQUENCE:
            return False
        raise
    return not ack.duplicate


class Dispatcher:
    def __init__(self, settings: WebhooksSettings, nc: Client):
        self.settings = settings
        self.nc = nc
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

    async def plan(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data, dict(msg.headers or {}), msg.subject)
        except UnreadableEvent as err:
            log.warning("dispatch.unreadable_event", subject=msg.subject, error=str(err))
            await msg.ack()
            return
        seq = msg.metadata.sequence.stream
        if isinstance(event, JobSubmitted):
            if event.request.deadline is not None:
                timer = DeadlineTimer(job_id=event.job_id, deadline=event.request.deadline)
                await _create(self.js, subjects.deadline_timer(event.job_id), _encode(timer),
                              f"{event.job_id}:deadline")
            await msg.ack()
            return
        kind = event_type(event)
        request = await self._request_of(event.job_id)
        if request is None or request.webhook_url is None or not request.webhook_wants(kind):
            await msg.ack()
            return
        if (utcnow() - event.time).total_seconds() > self.settings.webhook_retry_window_s:
            # Older than any retry would go on for (a consumer made afresh reads
            # the stream from its start): telling of it now would only mislead.
            log.info("webhook.too_old", job_id=event.job_id, event_type=kind)
            await msg.ack()
            return
        if kind == "progress" and await self._too_soon(event.job_id, event.time):
            await msg.ack()
            return
        delivery = make_delivery(event, seq, request.webhook_url, self.settings.public_url)
        if await _create(self.js, subjects.webhook_delivery(event.job_id, kind, seq), _encode(delivery),
                         delivery.id):
            metrics.PLANNED.labels(kind).inc()
            log.info("webhook.planned", job_id=event.job_id, delivery_id=delivery.id, event_type=kind)
        await msg.ack()

    async def _too_soon(self, job_id: str, time) -> bool:  # type: ignore[no-untyped-def]
        """At most one progress webhook a second per job, by the events' own
        times, read from the stored deliveries (so it holds across restarts)."""
        try:
            raw = await self.js.get_last_msg(DISPATCH_STREAM, subjects.job_webhook_deliveries(job_id, "progress"),
                                             direct=True)
        except NotFoundError:
            return False
        last = _decode_delivery(raw.data or b"")
        return (time - last.event_time).total_seconds() < self.settings.webhook_progress_interval_s

    async def planner(self) -> None:
        await self._pull(JOBS_STREAM, DISPATCHER_CONSUMER, 64, self.plan)

    # ---- sender ----------------------------------------------------------

    async def send(self, msg: Msg) -> None:
        delivery = _decode_delivery(msg.data)
        subject = subjects.webhook_attempts(delivery.job_id, delivery.seq)
        last_seq, attempt = 0, 1
        try:
            raw = await self.js.get_last_msg(JOBS_STREAM, subject, direct=True)
            recorded = decode_event(raw.data or b"", dict(raw.headers or {}), raw.subject or subject)
            assert isinstance(recorded, WebhookAttempt)
            if recorded.outcome != "retrying":
                await msg.ack()  # delivered or given up before a crash: nothing more to do
                return
            last_seq, attempt = raw.seq, recorded.attempt + 1
        except NotFoundError:
            pass
        bound = log.bind(job_id=delivery.job_id, delivery_id=delivery.id, attempt=attempt)
        refused, addresses = await checked_addresses(delivery.url, self.settings.webhook_allow_loopback,
                                                     self.settings.webhook_allow_private)
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
            outcome="retrying" if outcome == "retry" else outcome,  # type: ignore[arg-type]
            status_code=code, error=error, duration_ms=duration,
            next_attempt_at=now + timedelta(seconds=delay) if delay is not None else None)
        body, headers = encode_event(record)
        headers[HDR_MSG_ID] = f"{delivery.id}:{attempt}"
        # Exactly one record per attempt number, in order: a second sender of the
        # same delivery (after an ack-wait expiry) loses here and looks again.
        headers["Nats-Expected-Last-Subject-Sequence"] = str(last_seq)
        try:
            await self.js.publish(subject, body, headers=headers, stream=JOBS_STREAM)
        except APIError as err:
            if err.err_code != WRONG_LAST_SEQUENCE:
                raise
            bound.info("webhook.recorded_elsewhere")
            await msg.nak(delay=1.0)
            return
        metrics.ATTEMPTS.labels(record.outcome).inc()
        if duration:
            metrics.ATTEMPT_SECONDS.observe(duration / 1000)
        bound.info("webhook.attempt", outcome=record.outcome, status_code=code, error=error,
                   retry_in_s=round(delay, 2) if delay is not None else None)
        if delay is None:
            await msg.ack()
        else:
            await msg.nak(delay=delay)

    async def sender(self) -> None:
        await self._pull(DISPATCH_STREAM, WEBHOOK_SENDER_CONSUMER, self.settings.webhook_concurrency, self.send,
                         concurrent=True)

    # ---- deadlines -------------------------------------------------------

    async def expire(self, msg: Msg) -> None:
        timer = _decode_timer(msg.data)
        left = (timer.deadline - utcnow()).total_seconds()
        if left > 0:
            await msg.nak(delay=min(left, _MAX_TIMER_WAIT_S))
            return
        if (await last_event(self.js, subjects.job_final(timer.job_id)) is None
                and await last_event(self.js, subjects.event_subject(timer.job_id, "started")) is None):
            seq = await publish_final(self.js, JobExpired(
                job_id=timer.job_id, reason=f"not started by its deadline {timer.deadline.isoformat()}"))
            if seq is not None:
                metrics.EXPIRED.inc()
                log.info("job.expired", job_id=timer.job_id, deadline=timer.deadline.isoformat())
        await msg.ack()

    async def deadlines(self) -> None:
        await self._pull(DISPATCH_STREAM, DEADLINE_CONSUMER, 64, self.expire)

    # ---- plumbing --------------------------------------------------------

    async def _pull(self, stream: str, durable: str, batch: int, handle,  # type: ignore[no-untyped-def]
                    concurrent: bool = False) -> None:
        async def one(msg: Msg) -> None:
            try:
                await handle(msg)
            except Exception as err:  # NATS trouble or a bug: this message comes back later
                log.error("dispatch.handle_failed", subject=msg.subject, error=repr(err), exc_info=err)
                try:
                    await msg.nak(delay=2.0)
                except Exception:
                    pass

        # Concurrent: up to `batch` tries in flight, a slot refilled as soon as
        # one ends, so a slow receiver never holds up the others.
        running: set[asyncio.Task[None]] = set()
        sub = await self.js.pull_subscribe_bind(durable=durable, stream=stream)
        idle = 0
        while not self.stop.is_set():
            free = batch - len(running)
            if free <= 0:
                await asyncio.wait(running, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await sub.fetch(free if concurrent else batch, timeout=1.0)
            except (NatsTimeout, TimeoutError):  # fetch(n > 1) may raise the builtin one
                idle += 1
                if idle < 30:
                    continue
                msgs = []
            except Exception as err:
                log.warning("dispatch.fetch_failed", durable=durable, error=repr(err))
                await asyncio.sleep(1.0)
                msgs = []
            if not msgs:
                # A pull subscription can fall silent after its server restarts
                # (nats-io/nats.py#504): after an error, or half a minute of
                # nothing, bind afresh. Cheap, and harmless if all was well.
                idle = 0
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
                try:
                    sub = await self.js.pull_subscribe_bind(durable=durable, stream=stream)
                except Exception as err:
                    log.warning("dispatch.bind_failed", durable=durable, error=repr(err))
                    await asyncio.sleep(1.0)
                continue
            idle = 0
            for m in msgs:
                if concurrent:
                    task = asyncio.create_task(one(m))
                    running.add(task)
                    task.add_done_callback(running.discard)
                else:
                    await one(m)
        if running:
            await asyncio.wait(running, timeout=15)
        try:
            await sub.unsubscribe()
        except Exception:
            pass


async def run(settings: WebhooksSettings) -> None:
    if not settings.webhook_secret:
        raise SettingsError("MOCHI_WEBHOOK_SECRET is required: a Standard Webhooks secret, whsec_<base64>")
    nc = await connect(settings.nats_url, name="mochi-webhooks")
    js = nc.jetstream()
    await ensure_dispatcher_topology(js, JetStreamSettings(replicas=settings.jetstream_replicas),
                                     settings.dispatch_max_age_s, settings.webhook_ack_wait_s)
    dispatcher = Dispatcher(settings, nc)
    if settings.health_port:
        await serve_health(settings.health_host, settings.health_port,
                           lambda: nc.is_connected and not dispatcher.stop.is_set())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatcher.stop.set)
    tasks = [asyncio.create_task(dispatcher.planner(), name="planner"),
             asyncio.create_task(dispatcher.sender(), name="sender"),
             asyncio.create_task(dispatcher.deadlines(), name="deadlines")]
    log.info("webhooks.ready")
    done, _ = await asyncio.wait([*tasks, asyncio.create_task(dispatcher.stop.wait())],
                                 return_when=asyncio.FIRST_COMPLETED)
    dispatcher.stop.set()
    for task in done:
        if task in tasks:
            task.result()  # a loop died: fail loudly
    await asyncio.wait(tasks, timeout=15)
    await dispatcher.http.aclose()
    await nc.drain()
    log.info("webhooks.stopped")


def main() -> None:
    settings = load_settings(WebhooksSettings)
    configure_logging("webhooks", settings.log_level)
    asyncio.run(run(settings))

"""One way to connect to NATS: reconnect for ever and log every transition."""

from __future__ import annotations

from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, NoRespondersError, StaleConnectionError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServiceUnavailableError

from mochi_common.backoff import patiently
from mochi_common.event_intake import read_event
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import HDR_MSG_ID, JobEvent, event_type
from mochi_contracts.streams import JOBS_STREAM

log = structlog.get_logger()

# The server's error code when an expected-last-sequence guard fails.
WRONG_LAST_SEQUENCE = 10071
# A cluster that is still forming or electing answers these for seconds:
# 10005 "no suitable peers for placement" (not all peers known yet) and 10008
# "JetStream system temporarily unavailable".
_CLUSTER_UNAVAILABLE_CODES = frozenset({10005, 10008})


class Reconnects:
    """Counts reconnections, for work that must redo something after one."""

    def __init__(self) -> None:
        self.count = 0


async def connect(url: str, name: str, reconnects: Reconnects | None = None, **kwargs: Any) -> Client:
    async def on_error(err: Exception) -> None:
        log.warning("nats.error", error=repr(err))

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")
        if reconnects is not None:
            reconnects.count += 1

    return await nats.connect(
        servers=url.split(","), name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
        error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, **kwargs)


def msg_id(event: JobEvent, *parts: object) -> str:
    return ":".join([event.job_id, event_type(event), *map(str, parts)])


# What a request meets while a stream changes leader or NATS restarts; the
# same publish (same Nats-Msg-Id) is safe to send again.
TRANSIENT = (NoStreamResponseError, ServiceUnavailableError, NatsTimeout, NoRespondersError,
             ConnectionClosedError, StaleConnectionError)


def is_nats_down(err: BaseException) -> bool:
    """The one test for "NATS is away for now, try again": every service's
    retries, the consumer runtime and the API's 503 ask this."""
    if isinstance(err, (*TRANSIENT, TimeoutError)):
        return True
    return isinstance(err, APIError) and err.err_code in _CLUSTER_UNAVAILABLE_CODES


class PatientJetStream:
    """A JetStream context whose publishes retry transient failures for up to
    `patience_s` seconds, so a stream leader election does not fail the work
    that publishes (the runner's job events). A retried publish carries the
    same Nats-Msg-Id, so the stream keeps one copy. Everything else is the
    wrapped context's."""

    def __init__(self, js: Any, patience_s: float):
        self._js = js
        self.patience_s = patience_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> PubAck:
        def on_retry(err: Exception, delay: float) -> None:
            log.warning("nats.publish_retry", subject=subject, error=repr(err), delay_s=delay)

        return await patiently(lambda: self._js.publish(subject, payload, **kwargs),
                               is_nats_down, self.patience_s, on_retry, first_delay_s=0.2)


async def publish_event(js: Any, event: JobEvent, dedupe: str | None = None) -> int:
    """Publish an event with its readable headers; returns the stream sequence."""
    body, headers = encode_event(event)
    headers[HDR_MSG_ID] = dedupe or msg_id(event)
    ack = await js.publish(subjects.event_subject(event.job_id, event_type(event)), body,
                           headers=headers, stream=JOBS_STREAM)
    return ack.seq


async def publish_guarded(js: Any, stream: str, subject: str, body: bytes, headers: dict[str, str],
                          last_seq: int = 0, guard_subject: str | None = None) -> int | None:
    """Publish only if the newest message on `guard_subject` (default: the
    subject itself) is at `last_seq` (0: there is none); None if the guard or
    the duplicate window refused it. The guard holds for the life of the
    stream, where Nats-Msg-Id dedupes only inside the duplicate window."""
    headers = {**headers, "Nats-Expected-Last-Subject-Sequence": str(last_seq)}
    if guard_subject is not None:
        headers["Nats-Expected-Last-Subject-Sequence-Subject"] = guard_subject
    try:
        ack = await js.publish(subject, body, headers=headers, stream=stream)
    except APIError as err:
        if err.err_code == WRONG_LAST_SEQUENCE:
            return None
        raise
    return None if ack.duplicate else int(ack.seq)


async def publish_final(js: Any, event: JobEvent) -> int | None:
    """Publish a job's one final event; None if the job already has one."""
    body, headers = encode_event(event)
    headers[HDR_MSG_ID] = f"{event.job_id}:final"
    return await publish_guarded(js, JOBS_STREAM, subjects.event_subject(event.job_id, event_type(event)), body,
                                 headers, guard_subject=subjects.job_final(event.job_id))


class StoredEvent:
    __slots__ = ("seq", "event")

    def __init__(self, seq: int, event: JobEvent):
        self.seq = seq
        self.event = event


async def newest_seq(js: Any, subject: str) -> int:
    """The stream sequence of the newest message on `subject` (wildcards
    allowed), 0 if there is none; read, not decoded, so an unreadable message
    counts too."""
    try:
        return (await js.get_last_msg(JOBS_STREAM, subject, direct=True)).seq
    except NotFoundError:
        return 0


async def last_event(js: Any, subject: str, consistent: bool = False) -> StoredEvent | None:
    """The newest event on `subject` (wildcards allowed), read without a consumer.

    A direct get may be answered by a replica a moment behind the leader;
    `consistent=True` asks the leader, which has every acknowledged event: for
    reads that decide whether to start GPU work."""
    try:
        raw = await js.get_last_msg(JOBS_STREAM, subject, direct=not consistent)
    except NotFoundError:
        return None
    event = read_event("last_event", raw.subject or subject, raw.data, raw.headers, raw.seq)
    return None if event is None else StoredEvent(raw.seq, event)

"""Live job events for every SSE client of this API process.

One ordered JetStream consumer (new events only) per process, fanned out to
in-memory listeners, so a hundred open streams cost one consumer, not a
hundred. Replaying the past is separate (see event_replay.py) and bounded.

The pump runs under the API's Supervisor: after any error it is started
again from the sequence after the last one it delivered, so a NATS hiccup
costs listeners a pause, never an event."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from mochi_common.event_intake import refused
from mochi_common.nats_conn import last_event, newest_seq
from mochi_contracts import subjects
from mochi_contracts.event_codec import UnreadableEvent, decode_event, encode_event
from mochi_contracts.events import JobEvent, JobSubmitted, event_type
from mochi_contracts.streams import JOBS_STREAM

log = structlog.get_logger()

# The SSE event name of a refused event on a job's stream.
REJECTED = "rejected"
# How long the pump waits for a message before it asks whether the stream has
# newer events than it delivered; two such waits with events pending mean the
# subscription is stuck (a consumer lost in an outage), and the pump restarts.
STALL_CHECK_S = 5.0


@dataclass(frozen=True)
class StreamEvent:
    """One message of the job stream as SSE sends it. `data` is the event
    re-encoded after decoding, never the bytes a publisher wrote; a refused
    event (`type` "rejected", `event` None) carries only its sequence,
    subject and why."""

    seq: int
    subject: str
    job_id: str
    type: str
    data: bytes
    time: datetime | None = None
    event: JobEvent | None = None
    reason: str | None = None

    @property
    def rejected(self) -> bool:
        return self.event is None


def stream_event(consumer: str, subject: str, seq: int, data: bytes | None,
                 headers: Mapping[str, str] | None, time: datetime | None = None) -> StreamEvent | None:
    """Decode one job-stream message at the boundary. A refusal is counted and
    logged, and kept as a rejected StreamEvent for the job's own page; None
    for a message whose subject names no job (nobody's page shows it)."""
    try:
        event = decode_event(data or b"", headers, subject)
    except UnreadableEvent as err:
        refused(consumer, subject, err, seq)
        # A subject no event may have can still sit under a job's token (mochi.jobs.<id>.x.y): that
        # job's page shows it too.
        job_id = err.job_id or subjects.job_id_of(subject)
        if job_id is None:
            return None
        body = json.dumps({"seq": seq, "subject": subject[:200], "reason": str(err)[:500]}).encode()
        return StreamEvent(seq=seq, subject=subject, job_id=job_id, type=REJECTED, data=body,
                           time=time, reason=str(err)[:500])
    return StreamEvent(seq=seq, subject=subject, job_id=event.job_id, type=event_type(event),
                       data=encode_event(event)[0], time=time, event=event)


@dataclass(eq=False)
class Listener:
    """One SSE connection's view: a job, or every job of an owner (None: all).
    `key` is whose stream it is (the caller's owner), for the per-key cap.
    None on the queue, or `ended`, means the stream must end so its client
    resumes with Last-Event-ID."""

    job_id: str | None
    owner: str | None
    key: str = ""
    queue: asyncio.Queue[StreamEvent | None] = field(default_factory=lambda: asyncio.Queue(maxsize=2048))
    ended: bool = False


class TooManyStreams(Exception):
    def __init__(self, key: str, cap: int):
        super().__init__(f"{key} has {cap} event streams open, the most allowed")
        self.key = key
        self.cap = cap


class HubClosing(Exception):
    """This replica is stopping: a new stream belongs on another one."""


class HubStalled(Exception):
    """The stream has events the subscription has not delivered for a while."""


class OwnerCache:
    """job id -> owner, learned from submitted events, looked up on a miss."""

    def __init__(self, js: JetStreamContext, size: int = 100_000):
        self.js = js
        self.size = size
        self._owners: OrderedDict[str, str] = OrderedDict()

    def learn(self, job_id: str, owner: str) -> None:
        self._owners[job_id] = owner
        self._owners.move_to_end(job_id)
        while len(self._owners) > self.size:
            self._owners.popitem(last=False)

    async def owner_of(self, job_id: str) -> str | None:
        if job_id in self._owners:
            return self._owners[job_id]
        found = await last_event(self.js, subjects.event_subject(job_id, "submitted"))
        if found is None or not isinstance(found.event, JobSubmitted):
            return None
        self.learn(job_id, found.event.owner)
        return found.event.owner


class EventHub:
    def __init__(self, js: JetStreamContext, stall_check_s: float = STALL_CHECK_S):
        self.js = js
        self.owners = OwnerCache(js)
        self.stall_check_s = stall_check_s
        self._listeners: set[Listener] = set()
        self._per_key: dict[str, int] = {}
        # The first sequence not yet handed to listeners; set by prepare().
        self.next_seq: int | None = None
        self.closing = False

    async def prepare(self) -> None:
        """Fix where live events start, before the API serves: every event
        after this point reaches the listeners, however late the pump starts."""
        info = await self.js.stream_info(JOBS_STREAM)
        self.next_seq = info.state.last_seq + 1

    # ---- listeners -------------------------------------------------------

    def listen(self, job_id: str | None, owner: str | None, key: str = "", cap: int = 0) -> Listener:
        """A new listener; TooManyStreams if `key` already holds `cap` (0: no cap),
        HubClosing once close() was called."""
        if self.closing:
            raise HubClosing("this API replica is stopping")
        if cap and self._per_key.get(key, 0) >= cap:
            raise TooManyStreams(key, cap)
        listener = Listener(job_id, owner, key)
        self._listeners.add(listener)
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return listener

    def forget(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.discard(listener)
            left = self._per_key.get(listener.key, 1) - 1
            if left > 0:
                self._per_key[listener.key] = left
            else:
                self._per_key.pop(listener.key, None)

    def open_streams(self, key: str) -> int:
        return self._per_key.get(key, 0)

    def close(self) -> int:
        """End every open stream now and refuse new ones: the server waits for
        open responses before it stops, and an event stream never ends by
        itself. Each client reconnects (to another replica behind the same
        Service) with Last-Event-ID and misses nothing. Returns how many ended."""
        self.closing = True
        listeners = list(self._listeners)
        for listener in listeners:
            self._end(listener)
        return len(listeners)

    def _end(self, listener: Listener) -> None:
        # Still counted against its key until its stream forgets it.
        listener.ended = True
        try:
            listener.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # it wakes on the events it holds and then sees `ended`

    # ---- the pump --------------------------------------------------------

    async def run(self) -> None:
        """Follow the stream from next_seq until an error (the Supervisor
        calls this again after one)."""
        if self.next_seq is None:
            await self.prepare()
        assert self.next_seq is not None
        info = await self.js.stream_info(JOBS_STREAM)
        if info.state.first_seq > self.next_seq and info.state.last_seq >= self.next_seq:
            # Events were removed from the stream while the pump was down: no
            # listener can get them from here, so each stream ends and its
            # client resumes with Last-Event-ID, whose replay says what is left.
            log.warning("hub.events_lost", from_seq=self.next_seq, first_seq=info.state.first_seq)
            for listener in list(self._listeners):
                self._end(listener)
            self.next_seq = info.state.first_seq
        sub = await self.js.subscribe(subjects.ALL_JOB_EVENTS, stream=JOBS_STREAM, ordered_consumer=True,
                                      deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                      config=ConsumerConfig(opt_start_seq=self.next_seq))
        log.info("hub.following", from_seq=self.next_seq)
        try:
            await self._pump(sub)
        finally:
            try:
                await sub.unsubscribe()
            except Exception as err:  # the connection may be the thing that failed
                log.warning("hub.unsubscribe_failed", error=repr(err))

    async def _pump(self, sub: JetStreamContext.PushSubscription) -> None:
        idle_with_pending = 0
        while True:
            try:
                msg = await sub.next_msg(timeout=self.stall_check_s)
            except NatsTimeout:
                assert self.next_seq is not None
                if await newest_seq(self.js, subjects.ALL_JOB_EVENTS) >= self.next_seq:
                    idle_with_pending += 1
                    if idle_with_pending >= 2:
                        raise HubStalled(f"events from {self.next_seq} exist but were not delivered") from None
                else:
                    idle_with_pending = 0
                continue
            idle_with_pending = 0
            meta = msg.metadata
            event = stream_event("api-hub", msg.subject, meta.sequence.stream, msg.data, msg.headers,
                                 meta.timestamp)
            if event is not None:
                if isinstance(event.event, JobSubmitted):
                    self.owners.learn(event.job_id, event.event.owner)
                await self._dispatch(event)
            self.next_seq = meta.sequence.stream + 1

    async def _dispatch(self, event: StreamEvent) -> None:
        owner: str | None = None
        looked_up = False
        for listener in list(self._listeners):
            if listener.ended:
                continue
            if listener.job_id is not None:
                if listener.job_id != event.job_id:
                    continue
            elif event.rejected:
                continue  # a refusal is shown on its job's page, not in every list
            elif listener.owner is not None:
                if not looked_up:
                    owner, looked_up = await self.owners.owner_of(event.job_id), True
                if owner != listener.owner:
                    continue
            try:
                listener.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A client this far behind drains what it has, its stream
                # ends, and it resumes from the stream with Last-Event-ID.
                listener.ended = True

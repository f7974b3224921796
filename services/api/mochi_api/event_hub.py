"""Live job events for every SSE client of this API process.

One ordered JetStream consumer (new events only) per process, fanned out to
in-memory listeners, so a hundred open streams cost one consumer, not a
hundred. Replaying the past is separate (see event_replay.py) and bounded."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from mochi_common.nats_conn import last_event
from mochi_contracts import subjects
from mochi_contracts.events import HDR_EVENT_TYPE, JobSubmitted
from mochi_contracts.streams import JOBS_STREAM

log = structlog.get_logger()


@dataclass(frozen=True)
class StreamEvent:
    seq: int
    subject: str
    job_id: str
    type: str
    data: bytes


@dataclass(eq=False)
class Listener:
    """One SSE connection's view: a job, or every job of an owner (None: all)."""

    job_id: str | None
    owner: str | None
    queue: asyncio.Queue[StreamEvent] = field(default_factory=lambda: asyncio.Queue(maxsize=2048))
    overflowed: bool = False


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
    def __init__(self, js: JetStreamContext):
        self.js = js
        self.owners = OwnerCache(js)
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sub = await self.js.subscribe(subjects.ALL_JOB_EVENTS, stream=JOBS_STREAM, ordered_consumer=True,
                                      deliver_policy=DeliverPolicy.NEW)
        self._task = asyncio.create_task(self._pump(sub), name="event-hub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self._task.done()

    def listen(self, job_id: str | None, owner: str | None) -> Listener:
        listener = Listener(job_id, owner)
        self._listeners.add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    async def _pump(self, sub) -> None:  # type: ignore[no-untyped-def]
        async for msg in sub.messages:
            job_id = subjects.job_id_of(msg.subject)
            if job_id is None:
                continue
            headers = msg.headers or {}
            event = StreamEvent(seq=msg.metadata.sequence.stream, subject=msg.subject, job_id=job_id,
                                type=headers.get(HDR_EVENT_TYPE, ""), data=msg.data)
            if event.type == "submitted":
                try:
                    self.owners.learn(job_id, _decode_owner(msg.data).owner)
                except msgspec.MsgspecError:
                    log.warning("hub.unreadable_submitted", seq=event.seq)
            await self._dispatch(event)

    async def _dispatch(self, event: StreamEvent) -> None:
        owner: str | None = None
        for listener in list(self._listeners):
            if listener.job_id is not None and listener.job_id != event.job_id:
                continue
            if listener.job_id is None and listener.owner is not None:
                owner = owner or await self.owners.owner_of(event.job_id)
                if owner != listener.owner:
                    continue
            try:
                listener.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A client this far behind drains what it has, its stream
                # ends, and it resumes from the stream with Last-Event-ID.
                listener.overflowed = True
                self._listeners.discard(listener)


class _Owner(msgspec.Struct):
    owner: str


_decode_owner = msgspec.json.Decoder(_Owner).decode

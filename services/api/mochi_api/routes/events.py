"""Server-sent events: one job's history then live, or every visible job live.

Each message's `id:` is its stream sequence, so a browser's EventSource
resumes exactly where it stopped by sending Last-Event-ID. Every message was
decoded at the boundary: its data is the event re-encoded, and an event the
boundary refused shows on its job's stream as `event: rejected` (never its
bytes), with its own id so a resume passes it."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from mochi_api import openapi_docs as docs
from mochi_api.context import ApiContext, Caller
from mochi_api.event_hub import HubClosing, Listener, StreamEvent, TooManyStreams
from mochi_api.event_replay import ReplayCutShort, replay
from mochi_api.problems import invalid_fields, problem, unavailable
from mochi_api.job_access import visible_job
from mochi_common.nats_conn import last_event, newest_seq
from mochi_contracts import subjects
from mochi_contracts.events import FINAL_TYPES, JobPhase, JobPreview
from mochi_contracts.jobs import FieldError
from mochi_contracts.resources import job_links

INT64_MAX = 2**63 - 1
_json = msgspec.json.Encoder().encode
# How long a client told "too many streams" should wait before it tries again.
STREAMS_RETRY_AFTER_S = 10
# The comment between a job stream's history and its live part.
REPLAYED = "replayed"
# A stream refused by a stopping replica: the next try lands on another one.
STOPPING_RETRY_AFTER_S = 1

_LAST_EVENT_ID = Parameter(
    header="Last-Event-ID", required=False,
    description="The `id:` of the last message received (a stream sequence: ASCII digits, "
                "at most 20, within int64); the stream resumes after it")
_LAST_EVENT_ID_QUERY = Parameter(
    query="last_event_id", required=False,
    description="The same as the Last-Event-ID header, for clients that cannot set headers")
_STREAM_RESPONSES = {
    400: docs._problem(400, "invalid-request", "The request has invalid fields",
                       "Last-Event-ID: ASCII digits within int64 (at most 20)"),
    429: docs._problem(429, "too-many-streams", "Too many event streams",
                       "anonymous has 8 event streams open, the most allowed; close one or retry later"),
}


class _Comment(ServerSentEventMessage):
    """Litestar 2 writes an empty `data:` line after a comment, which makes a
    browser dispatch an empty message event on every heartbeat; a comment
    line alone is what the SSE spec means by a keep-alive."""

    def encode(self) -> bytes:
        return f": {self.comment}\r\n\r\n".encode()


def _resume_from(header: str | None, query: str | None) -> int | None:
    """The sequence after Last-Event-ID (header, or query for clients that
    cannot set it); None without one. Anything but a stream sequence is a 400,
    so no client value reaches int() unchecked."""
    raw = header or query
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20 and int(raw) <= INT64_MAX):
        raise invalid_fields([FieldError("Last-Event-ID", "a stream sequence: ASCII digits within int64 "
                                                          "(at most 20)")], 400)
    return int(raw) + 1


def _message(ctx: ApiContext, event: StreamEvent) -> ServerSentEventMessage:
    # data is msgspec's JSON (or a rejection's), so always UTF-8.
    data = event.data
    match event.event:
        case JobPreview(step=step, total_steps=total):
            # What a client needs to show it: the link, new per preview (the
            # runner's byte count and name stay on the job stream), and whose
            # it is, as every event's data says.
            url = f"{job_links(ctx.settings.public_url, event.job_id).preview}?step={step}"
            data = _json({"job_id": event.job_id, "step": step, "total_steps": total, "url": url})
        case JobPhase(phase=phase):
            # job_id: on /v1/events (every job's stream) the phase would name no job otherwise.
            data = _json({"job_id": event.job_id, "phase": phase})
    return ServerSentEventMessage(data=data.decode(), event=event.type, id=str(event.seq))


def _listen(ctx: ApiContext, caller: Caller, job_id: str | None) -> Listener:
    try:
        return ctx.hub.listen(job_id=job_id, owner=caller.owner_filter if job_id is None else None,
                              key=caller.owner, cap=ctx.settings.max_streams_per_owner)
    except TooManyStreams as err:
        exc = problem(429, "too-many-streams", "Too many event streams",
                      f"{err}; close one or retry later", limit=err.cap)
        exc.headers = {"Retry-After": str(STREAMS_RETRY_AFTER_S)}
        raise exc from None
    except HubClosing as err:
        raise unavailable(f"{err}; retry, another replica answers", STOPPING_RETRY_AFTER_S) from None


def _serve(ctx: ApiContext, listener: Listener, body: AsyncIterator[ServerSentEventMessage]) -> ServerSentEvent:
    # A stream whose body never starts (the client left first) never runs its
    # finally; the listener and its slot under the cap go with the generator.
    weakref.finalize(body, ctx.hub.forget, listener)
    return ServerSentEvent(body)


async def _follow(ctx: ApiContext, listener: Listener, after: int, close_on_final: bool
                  ) -> AsyncIterator[ServerSentEventMessage]:
    last = after
    while True:
        if listener.ended and listener.queue.empty():
            return
        try:
            event = await asyncio.wait_for(listener.queue.get(), ctx.settings.sse_heartbeat_s)
        except TimeoutError:
            # Proxies drop idle connections; a comment keeps this one open.
            yield _Comment(comment="keep-alive")
            continue
        if event is None:
            return  # the hub lost events it cannot send: resume with Last-Event-ID
        if event.seq <= last:
            continue
        last = event.seq
        yield _message(ctx, event)
        if close_on_final and event.type in FINAL_TYPES:
            return


@get("/v1/jobs/{job_id:str}/events", summary="One job's events: history, then live",
     description="Server-sent events. `id:` is the stream sequence; send Last-Event-ID to resume. "
                 "A comment every 15 s keeps the connection open; the comment `: replayed` marks the end of "
                 "the history (a client that wants only the past may close there); the stream ends after "
                 "the final event. "
                 "While the job runs, `event: phase` carries `{\"job_id\", \"phase\"}` when its phase changes "
                 "(encoding_prompt, denoising, decoding, encoding_video, storing), and `event: preview` "
                 "carries `{\"step\", \"total_steps\", \"url\"}` each time a new live preview is stored "
                 "(`url` is links.preview with `?step=`). "
                 "An event on this job's subjects that the service refused (it disagrees with its "
                 "subject, breaks a bound or is not JSON) arrives as `event: rejected` with "
                 "`{\"seq\", \"subject\", \"reason\"}` and its own id, and changes nothing. "
                 "One key may hold MOCHI_MAX_STREAMS_PER_OWNER streams (default 8) per API replica; "
                 "more answer 429 with Retry-After.",
     tags=["jobs"], responses={**docs.EVENTS_RESPONSES, **_STREAM_RESPONSES})
async def job_events(
    job_id: str, state: State, caller: Caller,
    last_event_id: Annotated[str | None, _LAST_EVENT_ID] = None,
    last_event_id_query: Annotated[str | None, _LAST_EVENT_ID_QUERY] = None,
) -> ServerSentEvent:
    ctx: ApiContext = state.ctx
    start = _resume_from(last_event_id, last_event_id_query) or 1
    await visible_job(ctx, caller, job_id)  # 404 unless the caller may see it
    listener = _listen(ctx, caller, job_id)

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        try:
            last = start - 1
            try:
                async for event in replay(ctx.js, subjects.job_events(job_id), start):
                    last = event.seq
                    yield _message(ctx, event)
                    if event.type in FINAL_TYPES:
                        return
            except ReplayCutShort:
                return  # the client reconnects with Last-Event-ID and gets the rest
            final = await last_event(ctx.js, subjects.job_final(job_id))
            if final is not None and final.seq <= last:
                return  # the client already has the final event
            # Tells a reader that wants only the history (the web app, whose live
            # events come from its one shared /v1/events stream) that it has it all.
            yield _Comment(comment=REPLAYED)
            async for message in _follow(ctx, listener, last, close_on_final=True):
                yield message
        finally:
            ctx.hub.forget(listener)

    return _serve(ctx, listener, stream())


@get("/v1/events", summary="Live events of every job the caller may see",
     description="Server-sent events for a job list page. With Last-Event-ID, first replays what was "
                 "missed since then, but never more than the newest MOCHI_SSE_REPLAY_MAX_EVENTS events "
                 "of the stream (default 1000): an older Last-Event-ID (`0` included) replays only those, "
                 "after a comment naming the sequence the replay starts at; read /v1/jobs for the state "
                 "of every job. Refused events are skipped. One shared NATS consumer serves every open "
                 "stream; one key may hold MOCHI_MAX_STREAMS_PER_OWNER streams (default 8) per API "
                 "replica, more answer 429 with Retry-After.",
     tags=["jobs"], responses={200: docs.EVENTS_RESPONSES[200], 401: docs.UNAUTHORIZED, **_STREAM_RESPONSES})
async def all_events(
    state: State, caller: Caller,
    last_event_id: Annotated[str | None, _LAST_EVENT_ID] = None,
    last_event_id_query: Annotated[str | None, _LAST_EVENT_ID_QUERY] = None,
) -> ServerSentEvent:
    ctx: ApiContext = state.ctx
    start = _resume_from(last_event_id, last_event_id_query)
    listener = _listen(ctx, caller, None)

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        try:
            last = 0
            if start is not None:
                first = start
                last = start - 1
                try:
                    oldest = await newest_seq(ctx.js, subjects.ALL_JOB_EVENTS) - ctx.settings.sse_replay_max_events + 1
                    if oldest > first:
                        first = oldest
                        yield _Comment(comment=f"replay starts at {first}: older events are not replayed")
                    async for event in replay(ctx.js, subjects.ALL_JOB_EVENTS, first):
                        last = event.seq
                        if event.rejected:
                            continue
                        owner = await ctx.hub.owners.owner_of(event.job_id)
                        if caller.owner_filter is None or owner == caller.owner_filter:
                            yield _message(ctx, event)
                except ReplayCutShort:
                    return  # the client reconnects with Last-Event-ID and gets the rest
            async for message in _follow(ctx, listener, last, close_on_final=False):
                yield message
        finally:
            ctx.hub.forget(listener)

    return _serve(ctx, listener, stream())

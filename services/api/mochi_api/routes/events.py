"""Server-sent events: one job's history then live, or every visible job live.

Each message's `id:` is its stream sequence, so a browser's EventSource
resumes exactly where it stopped by sending Last-Event-ID."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from litestar import Request, get
from litestar.datastructures import State
from litestar.response import ServerSentEvent, ServerSentEventMessage

from mochi_api import openapi_docs as docs
from mochi_api.context import ApiContext
from mochi_api.event_hub import Listener, StreamEvent
from mochi_api.event_replay import ReplayCutShort, replay
from mochi_api.context import Caller
from mochi_api.routes.jobs import _load
from mochi_common.nats_conn import last_event
from mochi_contracts import subjects
from mochi_contracts.events import FINAL_TYPES


class _Comment(ServerSentEventMessage):
    """Litestar 2 writes an empty `data:` line after a comment, which makes a
    browser dispatch an empty message event on every heartbeat; a comment
    line alone is what the SSE spec means by a keep-alive."""

    def encode(self) -> bytes:
        return f": {self.comment}\r\n\r\n".encode()


def _resume_from(request: Request) -> int:
    """The sequence after Last-Event-ID (header, or query for clients that cannot set it)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or ""
    return int(raw) + 1 if raw.isdigit() else 1


def _message(event: StreamEvent) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=event.data.decode(), event=event.type, id=str(event.seq))


async def _follow(ctx: ApiContext, listener: Listener, after: int, close_on_final: bool
                  ) -> AsyncIterator[ServerSentEventMessage]:
    last = after
    while True:
        if listener.overflowed and listener.queue.empty():
            return
        try:
            event = await asyncio.wait_for(listener.queue.get(), ctx.settings.sse_heartbeat_s)
        except TimeoutError:
            # Proxies drop idle connections; a comment keeps this one open.
            yield _Comment(comment="keep-alive")
            continue
        if event.seq <= last:
            continue
        last = event.seq
        yield _message(event)
        if close_on_final and event.type in FINAL_TYPES:
            return


@get("/v1/jobs/{job_id:str}/events", summary="One job's events: history, then live",
     description="Server-sent events. `id:` is the stream sequence; send Last-Event-ID to resume. "
                 "A comment every 15 s keeps the connection open; the stream ends after the final event.",
     tags=["jobs"], responses=docs.EVENTS_RESPONSES)
async def job_events(job_id: str, state: State, request: Request, caller: Caller) -> ServerSentEvent:
    ctx: ApiContext = state.ctx
    await _load(ctx, caller, job_id)  # 404 unless the caller may see it
    start = _resume_from(request)
    listener = ctx.hub.listen(job_id=job_id, owner=None)

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        try:
            last = start - 1
            try:
                async for event in replay(ctx.js, subjects.job_events(job_id), start):
                    last = event.seq
                    yield _message(event)
                    if event.type in FINAL_TYPES:
                        return
            except ReplayCutShort:
                return  # the client reconnects with Last-Event-ID and gets the rest
            final = await last_event(ctx.js, subjects.job_final(job_id))
            if final is not None and final.seq <= last:
                return  # the client already has the final event
            async for message in _follow(ctx, listener, last, close_on_final=True):
                yield message
        finally:
            ctx.hub.forget(listener)

    return ServerSentEvent(stream())


@get("/v1/events", summary="Live events of every job the caller may see",
     description="Server-sent events for a job list page. With Last-Event-ID, first replays what was "
                 "missed since then. One shared NATS consumer serves every open stream.",
     tags=["jobs"], responses={200: docs.EVENTS_RESPONSES[200], 401: docs.UNAUTHORIZED})
async def all_events(state: State, request: Request, caller: Caller) -> ServerSentEvent:
    ctx: ApiContext = state.ctx
    start = _resume_from(request) if (request.headers.get("last-event-id")
                                      or request.query_params.get("last_event_id")) else None
    listener = ctx.hub.listen(job_id=None, owner=caller.owner_filter)

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        try:
            last = 0
            if start is not None:
                last = start - 1
                try:
                    async for event in replay(ctx.js, subjects.ALL_JOB_EVENTS, start):
                        last = event.seq
                        owner = await ctx.hub.owners.owner_of(event.job_id)
                        if caller.owner_filter is None or owner == caller.owner_filter:
                            yield _message(event)
                except ReplayCutShort:
                    return  # the client reconnects with Last-Event-ID and gets the rest
            async for message in _follow(ctx, listener, last, close_on_final=False):
                yield message
        finally:
            ctx.hub.forget(listener)

    return ServerSentEvent(stream())

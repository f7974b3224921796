"""Settling an asyncio future from a worker thread: hand one of these to
`loop.call_soon_threadsafe`. Settled at most once: a future cancelled (or
settled) meanwhile is left as it is instead of raising InvalidStateError in
the event loop."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


def set_result_unless_done(future: asyncio.Future[T], result: T) -> None:
    if not future.done():
        future.set_result(result)


def set_exception_unless_done(future: asyncio.Future[T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)

"""Work in a thread, watched against a time budget: past it the work is asked
to stop (`on_overrun`), and if it still has not returned a grace period later
(a step, the decode or the encode hangs) it is given up on (`on_hung`, then
WorkHung). A thread cannot be killed, so whatever it holds (GPU lanes) is let
go only when it returns (`on_returned`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from mochi_runner.thread_futures import set_exception_unless_done, set_result_unless_done

T = TypeVar("T")


class WorkHung(Exception):
    """The render or encode ran past the maximum run time and did not stop."""


async def watched(work: Callable[[], T], *, name: str, budget_s: float | None, grace_s: float,
                  on_overrun: Callable[[], None], on_hung: Callable[[], None],
                  on_returned: Callable[[], None], overrun: str) -> T:
    """`work()` in a daemon thread named `name`, within `budget_s` (None: no
    limit). `overrun` says what the budget was, for WorkHung's message."""
    # A daemon thread, not asyncio.to_thread: a hung one must not keep the
    # process from exiting when it is restarted.
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = work()
        except BaseException as err:  # handed to the event loop, which raises it in the caller
            loop.call_soon_threadsafe(set_exception_unless_done, future, err)
        else:
            loop.call_soon_threadsafe(set_result_unless_done, future, result)

    threading.Thread(target=run, name=name, daemon=True).start()
    if budget_s is None:
        return await future
    done, _ = await asyncio.wait({future}, timeout=max(budget_s, 0.0))
    if done:
        return future.result()
    on_overrun()
    done, _ = await asyncio.wait({future}, timeout=grace_s)
    if done:
        return future.result()
    on_hung()

    def returned(_: asyncio.Future[T]) -> None:
        on_returned()
        if not future.cancelled():
            future.exception()  # retrieved, so asyncio does not log it as lost

    future.add_done_callback(returned)
    raise WorkHung(f"ran past {overrun} and did not stop within {grace_s:g}s "
                   "(a step, the decode or the encode hung)")

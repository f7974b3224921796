"""One backoff loop for work that meets passing failures: JetStream set-up
while a cluster forms, and the runner's patient publishes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def patiently(op: Callable[[], Awaitable[T]], is_transient: Callable[[Exception], bool],
                    patience_s: float, on_retry: Callable[[Exception, float], None], first_delay_s: float = 0.25) -> T:
    """`op()`, called again after each transient failure with a doubling delay
    (at most 5 s) for up to `patience_s`; any other failure, or the last one,
    is raised. One backoff for JetStream set-up here and for the runner's
    publishes (mochi_common.nats_conn.PatientJetStream)."""
    deadline, delay = time.monotonic() + patience_s, first_delay_s
    while True:
        try:
            return await op()
        except Exception as err:
            if not is_transient(err) or time.monotonic() + delay > deadline:
                raise
            on_retry(err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

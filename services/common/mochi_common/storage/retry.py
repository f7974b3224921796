"""Store calls that ride out a store's short outages: a bounded number of
tries with exponential backoff, each retry logged, then the last error raised."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from mochi_common.storage import TransientStoreError

T = TypeVar("T")
log = structlog.get_logger()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based). Jittered so
        runners that lost the store together do not come back in lockstep."""
        ceiling = min(self.first_delay_s * 2 ** (retry - 1), self.max_delay_s)
        return random.uniform(ceiling / 2, ceiling)


async def call_with_retries(op: Callable[[], T], policy: RetryPolicy, what: str,
                            on_retry: Callable[[str], Awaitable[None]] | None = None,
                            **context: object) -> T:
    """Run the blocking store call `op` in a thread; retry it only on
    TransientStoreError, so a refused or malformed request fails at once.
    `on_retry` hears of each retry in a line (the job's own log)."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return await asyncio.to_thread(op)
        except TransientStoreError as err:
            if attempt >= policy.attempts:
                log.error("store.gave_up", op=what, attempts=attempt, error=str(err), **context)
                raise
            delay = policy.delay(attempt)
            log.warning("store.retry", op=what, attempt=attempt, of=policy.attempts,
                        delay_s=round(delay, 2), error=str(err), **context)
            if on_retry is not None:
                await on_retry(f"store {what} failed ({err}); retry {attempt} of {policy.attempts - 1} "
                               f"in {delay:.1f}s")
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")

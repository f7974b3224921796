"""The two backoffs: a webhook's next try (exponential, capped, jittered,
Retry-After honoured up to the cap) and a store call's retries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mochi_common.storage import TransientStoreError
from mochi_common.storage.retry import RetryPolicy, call_with_retries
from mochi_webhooks.delivery import backoff_s

from .events import pure


@pure
@given(st.integers(1, 200), st.floats(0.01, 60), st.floats(0.01, 3600),
       st.none() | st.floats(0, 10**6, allow_nan=False))
def test_webhook_backoff_is_half_fixed_half_random_and_capped(attempt, first_s, max_s, retry_after):
    base = min(first_s * 2.0 ** (attempt - 1), max_s)
    delay = backoff_s(attempt, first_s, max_s, retry_after)
    floor = base / 2 if retry_after is None else max(base / 2, min(retry_after, max_s))
    assert floor - 1e-9 <= delay <= max(base, floor) + 1e-9
    assert delay <= max_s + 1e-9


def test_webhook_backoff_doubles_from_the_first_delay():
    for attempt, base in [(1, 0.4), (2, 0.8), (3, 1.6), (10, 5.0)]:
        delays = [backoff_s(attempt, 0.4, 5.0) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > base / 10  # jittered, not one instant for a fleet


def test_retry_after_is_honoured_up_to_the_cap():
    assert backoff_s(1, 0.4, 600, retry_after_s=30) == 30
    assert backoff_s(1, 0.4, 60, retry_after_s=10**6) == 60


@pure
@given(st.integers(1, 64), st.floats(0.001, 10), st.floats(0.001, 100))
def test_store_retry_delay_is_jittered_below_a_doubling_ceiling(retry, first_s, max_s):
    ceiling = min(first_s * 2 ** (retry - 1), max_s)
    assert ceiling / 2 <= RetryPolicy(first_delay_s=first_s, max_delay_s=max_s).delay(retry) <= ceiling


def _flaky(failures: int, error: Exception) -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def op() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "stored"

    return op, calls


def test_store_call_retried_on_transient_errors_then_succeeds():
    op, calls = _flaky(2, TransientStoreError("store away"))
    heard: list[str] = []

    async def on_retry(line: str) -> None:
        heard.append(line)

    policy = RetryPolicy(attempts=4, first_delay_s=0.001, max_delay_s=0.002)
    assert asyncio.run(call_with_retries(op, policy, "put", on_retry)) == "stored"
    assert len(calls) == 3 and len(heard) == 2 and heard[0].startswith("store put failed (store away); retry 1 of 3")


def test_store_call_gives_up_after_its_attempts_with_the_last_error():
    op, calls = _flaky(10, TransientStoreError("still away"))
    with pytest.raises(TransientStoreError, match="still away"):
        asyncio.run(call_with_retries(op, RetryPolicy(attempts=3, first_delay_s=0.001, max_delay_s=0.001), "put"))
    assert len(calls) == 3


def test_store_call_not_retried_on_other_errors():
    op, calls = _flaky(10, PermissionError("refused"))
    with pytest.raises(PermissionError):
        asyncio.run(call_with_retries(op, RetryPolicy(attempts=5, first_delay_s=0.001), "put"))
    assert len(calls) == 1

"""Polling helpers with a deadline, for conditions that other processes make true."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 60.0, every: float = 0.2, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last={last!r}")


@contextmanager
def watching_health(url: str, every: float = 0.1) -> Iterator[list[tuple[int, str]]]:
    """Poll `url` (a /healthz or /readyz) in a thread while the block runs; the
    list fills with (status, body) as they come. A probe the process does not
    answer is left out: what counts is what it says when it answers."""
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                r = httpx.get(url, timeout=5)
                seen.append((r.status_code, r.text))
            except httpx.TransportError:
                pass
            time.sleep(every)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join(10)

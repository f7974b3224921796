"""What may stop a render between two denoising steps."""

from __future__ import annotations

import threading


class RenderStopped(Exception):
    def __init__(self, reason: str, step: int):
        super().__init__(reason)
        self.reason = reason
        self.step = step


class JobControl:
    """Shared between the event loop (which sets a reason) and the render
    thread (which checks it after every step)."""

    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    FINISHED_ELSEWHERE = "finished elsewhere"
    TIMED_OUT = "timed out"

    def __init__(self) -> None:
        self._reason: str | None = None
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            self._reason = self._reason or reason

    @property
    def reason(self) -> str | None:
        return self._reason

    def check(self, step: int) -> None:
        if self._reason is not None:
            raise RenderStopped(self._reason, step)

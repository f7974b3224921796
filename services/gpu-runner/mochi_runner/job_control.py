"""What may stop a render between two denoising steps."""

from __future__ import annotations

import asyncio
import threading


class RenderStopped(Exception):
    def __init__(self, reason: str, step: int):
        super().__init__(reason)
        self.reason = reason
        self.step = step


class JobControl:
    """Shared between the event loop (which sets a reason: cancel, shutdown,
    timer, all callbacks on the loop) and the render thread (which checks it
    after every step)."""

    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    FINISHED_ELSEWHERE = "finished elsewhere"
    TIMED_OUT = "timed out"
    EXPIRED = "past its deadline"

    def __init__(self) -> None:
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._stopped = asyncio.Event()  # for a job still waiting for its GPUs

    def stop(self, reason: str) -> None:
        """On the event loop's thread only (asyncio.Event is not thread-safe)."""
        with self._lock:
            self._reason = self._reason or reason
        self._stopped.set()

    @property
    def reason(self) -> str | None:
        return self._reason

    async def stopped(self) -> None:
        await self._stopped.wait()

    def check(self, step: int) -> None:
        if self._reason is not None:
            raise RenderStopped(self._reason, step)

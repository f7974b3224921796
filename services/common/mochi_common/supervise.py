"""Long-lived background tasks that restart after an error and say whether
they run, so a service never dies of one bad moment and never stays ready
while a part of it is dead (its /readyz asks `healthy()`).

Written here rather than with a task-group library: the asyncio TaskGroup
cancels every sibling on the first error, which is the opposite of what a
service that must keep its other loops serving wants."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from prometheus_client import Counter, Gauge

log = structlog.get_logger()

RESTARTS = Counter("mochi_task_restarts_total", "Background tasks restarted after an error", ["task"])
RUNNING = Gauge("mochi_task_running", "1 while a background task runs, 0 while it waits to restart", ["task"])


@dataclass
class TaskState:
    name: str
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    finished: bool = False


class Supervisor:
    def __init__(self, first_delay_s: float = 0.5, max_delay_s: float = 15.0):
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.states: dict[str, TaskState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run()` until it returns; after an error, log it, wait a
        doubling delay and call it again. A clean return ends the task."""
        if name in self._tasks:
            raise ValueError(f"task {name} is already supervised")
        state = self.states[name] = TaskState(name)
        self._tasks[name] = asyncio.create_task(self._keep(state, run), name=name)

    async def _keep(self, state: TaskState, run: Callable[[], Awaitable[None]]) -> None:
        delay = self.first_delay_s
        while not self._stopping:
            state.running = True
            RUNNING.labels(state.name).set(1)
            began = time.monotonic()
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                state.running = False
                RUNNING.labels(state.name).set(0)
                if time.monotonic() - began > 10 * self.max_delay_s:
                    delay = self.first_delay_s  # it ran well for a while: a fresh failure, a short wait
                state.restarts += 1
                state.last_error = f"{type(err).__name__}: {err}"[:500]
                RESTARTS.labels(state.name).inc()
                log.error("task.failed", task=state.name, restart_in_s=delay, restarts=state.restarts,
                          exc_info=err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay_s)
                continue
            break
        state.running = False
        state.finished = True
        RUNNING.labels(state.name).set(0)

    def healthy(self) -> bool:
        """Every task runs (or ended cleanly)."""
        return all(s.running or s.finished for s in self.states.values())

    def unhealthy(self) -> list[str]:
        return [f"{s.name}: restarting after {s.last_error}" for s in self.states.values()
                if not (s.running or s.finished)]

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Restart nothing more; give the tasks `timeout_s` to end on their own
        (they watch the service's stop event), then cancel what is left."""
        self._stopping = True
        tasks = list(self._tasks.values())
        if tasks:
            _, left = await asyncio.wait(tasks, timeout=timeout_s)
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left, timeout=5.0)

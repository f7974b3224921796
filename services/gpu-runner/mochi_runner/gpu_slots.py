"""Which of the runner's GPU lanes are free, and which pulled job gets them next.

A runner has one lane per device of its engine (one lane on a one-device
engine). A guided job takes every lane: guidance-parallel denoising and the
split VAE decode use all devices. A guidance-free job on a multi-device engine
takes one lane, so two such jobs render at once, one per GPU.

A job holds its lanes from its first denoising step to the end of its VAE
decode and no longer: the MP4 encode and the upload run on the CPU while the
next job already denoises. That is what keeps the GPUs busy between jobs.

Tickets are granted strictly first come, first served, so a guided job that
waits for a busy lane is not overtaken by guidance-free jobs pulled after it.
The runner's loop pulls a job only while a lane is free and no ticket waits:
a runner does not hoard jobs that other runners could start now (a guided job
pulled while one lane is busy does wait for it, at most one job's time).

Hand-written rather than an asyncio.Semaphore: a semaphore grants units in
any order and cannot say which device (lane) a unit is."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from mochi_runner.job_control import JobControl, RenderStopped


class Ticket:
    """One job's claim on lanes; `lanes` is set once granted."""

    def __init__(self, whole: bool, granted: asyncio.Future[None]):
        self.whole = whole
        self.lanes: tuple[int, ...] = ()
        # When every lane of this grant had last been released (None: some lane
        # had never been used, e.g. the runner's first job): the GPU idle gap
        # before this job is the grant time minus this.
        self.idle_since: float | None = None
        self.granted_at: float | None = None
        self._granted = granted

    @property
    def lane(self) -> int | None:
        """The one lane of a guidance-free grant; None for a whole-engine grant."""
        return None if self.whole else self.lanes[0]

    async def wait(self, control: JobControl) -> None:
        """Until granted, or until the job is stopped (cancel, shutdown, ...),
        which raises RenderStopped at step 0."""
        stopped = asyncio.ensure_future(control.stopped())
        try:
            await asyncio.wait({self._granted, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if control.reason is not None:
            raise RenderStopped(control.reason, 0)
        self._granted.result()  # raises if the slots were closed


class GpuSlots:
    def __init__(self, lanes: int):
        if lanes < 1:
            raise ValueError("a runner needs at least one lane")
        self.lanes = lanes
        self._free: list[int] = list(range(lanes))
        self._queue: deque[Ticket] = deque()
        self._released_at: dict[int, float] = {}
        self._changed = asyncio.Event()
        self._closed = False

    def ticket(self, whole: bool) -> Ticket:
        """Claim lanes for a pulled job: every lane when `whole` (or when the
        engine has one lane), else one. Granted at once if free, else queued."""
        if self._closed:
            raise RuntimeError("the runner is shutting down")
        ticket = Ticket(whole or self.lanes == 1, asyncio.get_running_loop().create_future())
        self._queue.append(ticket)
        self._grant()
        return ticket

    def release(self, ticket: Ticket) -> None:
        """Give a ticket's lanes back, or withdraw a ticket not yet granted."""
        if ticket in self._queue:
            self._queue.remove(ticket)
            ticket._granted.cancel()
        now = time.perf_counter()
        for lane in ticket.lanes:
            self._released_at[lane] = now
            self._free.append(lane)
        ticket.lanes = ()
        self._grant()
        self._changed.set()

    def has_room(self) -> bool:
        """A lane is free and no pulled job waits: time to pull another."""
        return bool(self._free) and not self._queue and not self._closed

    async def wait_for_room(self, timeout: float) -> bool:
        """Until `has_room()` or `timeout` seconds; returns `has_room()`."""
        if not self.has_room():
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                pass
        return self.has_room()

    def close(self) -> None:
        """Shutdown: jobs still waiting for lanes are refused (they hand the job back)."""
        self._closed = True
        while self._queue:
            self._queue.popleft()._granted.set_exception(RenderStopped(JobControl.SHUTDOWN, 0))

    def _grant(self) -> None:
        while self._queue:
            head = self._queue[0]
            want = self.lanes if head.whole else 1
            if len(self._free) < want:
                return  # first come, first served: nothing overtakes the head
            self._queue.popleft()
            self._free.sort()
            head.lanes, self._free = tuple(self._free[:want]), self._free[want:]
            released = [self._released_at.get(lane) for lane in head.lanes]
            head.idle_since = None if None in released else max(t for t in released if t is not None)
            head.granted_at = time.perf_counter()
            head._granted.set_result(None)

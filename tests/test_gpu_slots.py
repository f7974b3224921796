"""Who gets the runner's GPU lanes: guided jobs take all, guidance-free jobs one,
first come first served, and a job stopped while it waits leaves the queue."""

from __future__ import annotations

import asyncio

import pytest

from mochi_runner.gpu_slots import GpuSlots
from mochi_runner.job_control import JobControl, RenderStopped


async def granted(ticket, control: JobControl | None = None, timeout: float = 0.2) -> bool:
    try:
        await asyncio.wait_for(ticket.wait(control or JobControl()), timeout)
        return True
    except TimeoutError:
        return False


def test_a_guided_job_takes_every_lane_and_the_next_waits() -> None:
    async def scenario() -> None:
        slots = GpuSlots(2)
        first = slots.ticket(whole=True)
        assert await granted(first) and first.lanes == (0, 1) and first.lane is None
        assert first.idle_since is None  # nothing ran before it
        assert not slots.has_room()
        second = slots.ticket(whole=True)
        assert not await granted(second)
        slots.release(first)
        assert await granted(second) and second.lanes == (0, 1)
        # Its idle gap is measured from the first job's release.
        assert second.idle_since is not None and second.granted_at is not None
        assert 0 <= second.granted_at - second.idle_since < 1.0

    asyncio.run(scenario())


def test_guidance_free_jobs_get_one_lane_each_and_a_guided_job_is_not_overtaken() -> None:
    async def scenario() -> None:
        slots = GpuSlots(2)
        a, b = slots.ticket(whole=False), slots.ticket(whole=False)
        assert await granted(a) and await granted(b)
        assert {a.lane, b.lane} == {0, 1}
        guided = slots.ticket(whole=True)
        late = slots.ticket(whole=False)  # pulled after the guided job
        slots.release(a)
        # One lane is free, but the guided job at the head needs both: the
        # guidance-free job behind it waits too.
        assert not await granted(guided) and not await granted(late)
        assert not slots.has_room()
        slots.release(b)
        assert await granted(guided) and guided.lanes == (0, 1)
        assert not await granted(late)
        slots.release(guided)
        assert await granted(late) and late.lane == 0
        assert slots.has_room()  # lane 1 is free and nobody waits

    asyncio.run(scenario())


def test_one_lane_engine_gives_every_job_the_whole_engine() -> None:
    async def scenario() -> None:
        slots = GpuSlots(1)
        job = slots.ticket(whole=False)
        assert await granted(job) and job.whole and job.lane is None and job.lanes == (0,)

    asyncio.run(scenario())


def test_a_job_cancelled_while_waiting_stops_and_leaves_the_queue() -> None:
    async def scenario() -> None:
        slots = GpuSlots(2)
        running = slots.ticket(whole=True)
        waiting = slots.ticket(whole=True)
        control = JobControl()
        wait = asyncio.create_task(waiting.wait(control))
        await asyncio.sleep(0.05)
        control.stop(JobControl.CANCELLED)
        with pytest.raises(RenderStopped) as stopped:
            await asyncio.wait_for(wait, 1.0)
        assert stopped.value.reason == JobControl.CANCELLED and stopped.value.step == 0
        slots.release(waiting)  # what the handler does in its finally
        slots.release(running)
        after = slots.ticket(whole=True)
        assert await granted(after) and after.lanes == (0, 1)

    asyncio.run(scenario())


def test_shutdown_refuses_jobs_still_waiting() -> None:
    async def scenario() -> None:
        slots = GpuSlots(2)
        running = slots.ticket(whole=True)
        waiting = slots.ticket(whole=True)
        slots.close()
        with pytest.raises(RenderStopped) as stopped:
            await asyncio.wait_for(waiting.wait(JobControl()), 1.0)
        assert stopped.value.reason == JobControl.SHUTDOWN
        assert not slots.has_room()
        with pytest.raises(RuntimeError):
            slots.ticket(whole=True)
        slots.release(running)

    asyncio.run(scenario())


def test_wait_for_room_wakes_on_release() -> None:
    async def scenario() -> None:
        slots = GpuSlots(1)
        job = slots.ticket(whole=True)
        assert not await slots.wait_for_room(timeout=0.05)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, slots.release, job)
        started = loop.time()
        assert await slots.wait_for_room(timeout=5.0)
        assert loop.time() - started < 1.0

    asyncio.run(scenario())

"""Supervised background tasks (mochi_common.supervise) behind the health
server every service without an HTTP API serves (catalog, runner, dispatcher,
scheduler), over HTTP on loopback: a task that fails is restarted with a
doubling delay, /readyz answers 503 naming it while it waits, and ready again
once it runs, while /healthz stays 200 throughout (a restart of the process
would not help a loop that restarts itself); a task that returns cleanly is
done, not down."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client import REGISTRY

from mochi_cli.processes import free_port
from mochi_common.health_server import serve_health
from mochi_common.supervise import Supervisor


def test_a_failing_task_restarts_and_readyz_names_it_meanwhile() -> None:
    async def scenario() -> None:
        supervisor = Supervisor(first_delay_s=1.0, max_delay_s=2.0)
        stop = asyncio.Event()
        failed = asyncio.Event()
        starts: list[float] = []

        async def flaky() -> None:
            starts.append(time.monotonic())
            if len(starts) <= 2:
                failed.set()
                raise RuntimeError(f"boom {len(starts)}")
            await stop.wait()

        async def once() -> None:
            return None

        port = free_port()
        server = await serve_health("127.0.0.1", port, supervisor.healthy, not_ready=supervisor.unhealthy)
        supervisor.start("flaky-loop", flaky)
        supervisor.start("one-shot", once)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            await asyncio.wait_for(failed.wait(), 5)
            down = await http.get("/readyz")
            assert down.status_code == 503, down.text
            assert "flaky-loop: restarting after RuntimeError: boom 1" in down.text, down.text
            assert "one-shot" not in down.text  # ended cleanly: done, not down
            alive = await http.get("/healthz")
            assert alive.status_code == 200, alive.text

            deadline = time.monotonic() + 15
            while (len(starts) < 3 or not supervisor.healthy()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            up = await http.get("/readyz")
            assert up.status_code == 200, up.text
        state = supervisor.states["flaky-loop"]
        assert (state.restarts, state.running, state.last_error) == (2, True, "RuntimeError: boom 2")
        assert supervisor.states["one-shot"].finished
        # The waits double: about 1 s, then about 2 s.
        first, second = starts[1] - starts[0], starts[2] - starts[1]
        assert 0.9 <= first < 1.9 and 1.9 <= second < 3.5, (first, second)
        assert REGISTRY.get_sample_value("mochi_task_restarts_total", {"task": "flaky-loop"}) == 2
        assert REGISTRY.get_sample_value("mochi_task_running", {"task": "flaky-loop"}) == 1
        stop.set()
        await supervisor.stop(timeout_s=5)
        assert state.finished and not state.running
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())

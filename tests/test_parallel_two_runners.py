"""Two runners on the CPU with the tiny model and several jobs submitted at
once over HTTP: the events show both runners rendering at the same time and
every job started once and finished once (no job ran twice)."""

from __future__ import annotations

from collections import defaultdict

from conftest import SMALL
from mochi_contracts.events import FINAL_TYPES

JOBS = 6


def test_two_runners_work_at_once_and_no_job_runs_twice(system):
    system.start_catalog()
    system.start_runner("runner-a", wait=True)
    system.start_runner("runner-b", wait=True)
    system.start_api()
    client = system.client()
    # Enough steps that a job outlasts the other runner's pull.
    params = {**SMALL, "num_inference_steps": 10}
    jobs = [client.submit(f"a red car drives along a road by the sea {i}", **params) for i in range(JOBS)]
    for job in jobs:
        assert client.wait(job.id, timeout=300).status == "completed"

    started: dict[str, list] = defaultdict(list)
    finals: dict[str, list] = defaultdict(list)
    for msg in system.events():
        if msg.type == "started":
            started[msg.event.job_id].append(msg.event)
        elif msg.type in FINAL_TYPES:
            finals[msg.event.job_id].append(msg.event)

    spans = []
    for job in jobs:
        job_id = job.id
        assert len(started[job_id]) == 1, f"{job_id} started {len(started[job_id])} times"
        assert [type(e).__name__ for e in finals[job_id]] == ["JobCompleted"], finals[job_id]
        begin, end = started[job_id][0], finals[job_id][0]
        assert begin.runner == end.runner
        spans.append((begin.time, end.time, begin.runner, job_id))

    spans.sort()
    t0 = spans[0][0]
    print("\njob timeline (seconds after the first start):")
    for begin, end, runner, job_id in spans:
        print(f"  {runner:9s} {job_id}  {(begin - t0).total_seconds():6.2f} -> {(end - t0).total_seconds():6.2f}")
    assert {runner for _, _, runner, _ in spans} == {"runner-a", "runner-b"}
    overlapping = [(a, b) for a in spans for b in spans
                   if a[2] == "runner-a" and b[2] == "runner-b" and a[0] < b[1] and b[0] < a[1]]
    assert overlapping, "the two runners never rendered at the same time"

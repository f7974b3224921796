"""Fair-share scheduling (MOCHI_SCHEDULING=fair, docs/scheduling.md) with real
processes: nats-server, `mochi scheduler` replicas and CPU runners on the tiny
model. Submissions are published the way the API publishes them (owners are
what the API stamps from a key), so the tests need no API process; which job
started when is read back from the job stream."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import nats
from nats.js.errors import KeyNotFoundError

from conftest import SMALL, System
from invariants import check_invariants
from mochi_cli.client import MochiClient
from mochi_cli.processes import Proc, free_port, spawn, spawn_service, wait_for_http
from mochi_common.nats_conn import publish_event
from mochi_contracts.events import FINAL_TYPES, JobSubmitted
from mochi_contracts.jobs import JobRequest
from mochi_contracts.scheduling import decode_queue_order, decode_release
from mochi_contracts.streams import (
    RELEASE_STREAM, SCHEDULER_LEASE_BUCKET, SCHEDULER_QUEUE_BUCKET, SCHEDULER_QUEUE_KEY)
from mochi_scheduler.lease import holder_of
from stream_reader import decodable
from waits import wait_until

FAIR = {"MOCHI_SCHEDULING": "fair"}
# Smaller than SMALL still: the scheduler's choices do not depend on a job's
# size, and dozens of jobs run on two shared cores.
TINY = {**SMALL, "num_frames": 1, "num_inference_steps": 2}
# Quick failover in tests; the default is 3 s.
LEASE_TTL_S = 2.0


def start_scheduler(system: System, name: str = "scheduler", **extra: str) -> Proc:
    port = free_port()
    env = system.env(MOCHI_HEALTH_PORT=str(port), MOCHI_SCHEDULER_ID=name,
                     MOCHI_LEASE_TTL_S=str(LEASE_TTL_S), **extra)
    proc = spawn_service("scheduler", env, system.logs, name=name)
    system.procs.append(proc)
    proc.health_url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{proc.health_url}/readyz", timeout=60, proc=proc.popen)
    return proc


def start_runners(system: System, n: int, **extra: str) -> list[Proc]:
    runners = [system.start_runner(f"runner-{i}", **FAIR, **extra) for i in range(n)]
    for proc in runners:
        wait_for_http(f"{proc.health_url}/readyz", timeout=180, proc=proc.popen)
    return runners


def keys_file(root: Path, lines: list[str]) -> str:
    path = root / "keys.txt"
    # The hashes only need the file's shape: the scheduler reads the owners' settings.
    path.write_text("".join(f"{line.split()[0]} {uuid.uuid4().hex * 2} {' '.join(line.split()[1:])}\n"
                            for line in lines))
    return str(path)


def submit(system: System, owner: str, n: int, priority: str = "normal") -> list[str]:
    async def go() -> list[str]:
        nc = await nats.connect(system.nats_url)
        try:
            js, ids = nc.jetstream(), []
            for i in range(n):
                job_id = uuid.uuid4().hex
                request = JobRequest(prompt=f"{owner} {i}", seed=i, priority=priority, **TINY)  # type: ignore[arg-type]
                await publish_event(js, JobSubmitted(job_id=job_id, request=request, owner=owner))
                ids.append(job_id)
            return ids
        finally:
            await nc.close()

    return asyncio.run(go())


def starts(system: System) -> list[tuple[int, str]]:
    """(stream sequence, job id) of every started event, oldest first."""
    return [(m.seq, m.event.job_id) for m in decodable(system.events()) if m.type == "started"]


def owners_of(system: System) -> dict[str, str]:
    return {m.event.job_id: m.event.owner for m in decodable(system.events()) if m.type == "submitted"}


def finished(system: System) -> set[str]:
    return {m.event.job_id for m in decodable(system.events()) if m.type in FINAL_TYPES}


def run_twice(system: System) -> list[str]:
    counts = Counter(job_id for _, job_id in starts(system))
    return [job_id for job_id, n in counts.items() if n > 1]


def test_a_late_owner_starts_at_the_next_free_lane(system: System) -> None:
    start_scheduler(system)
    start_runners(system, 2)
    a = submit(system, "alice", 30)
    wait_until(lambda: len(starts(system)) >= 2, timeout=120, what="two of alice's jobs started")
    started_before = {job_id for _, job_id in starts(system)}
    b = submit(system, "bob", 3)
    wait_until(lambda: set(b) <= {j for _, j in starts(system)}, timeout=180, what="bob's jobs started")
    after = [job_id for _, job_id in starts(system) if job_id not in started_before]
    # A lane already handed one of alice's jobs may start it just after bob
    # submitted; each of the two lanes then takes bob's next.
    assert after.index(b[0]) <= 1, after[:5]
    # Bob's three jobs alternate with alice's: none waits behind her backlog.
    assert max(after.index(j) for j in b) <= 6, after[:8]
    assert len(started_before & set(a)) >= 2
    assert not run_twice(system)


def releases(system: System) -> list[tuple[str, str]]:
    """(job id, scheduler) of every release, in release order."""
    async def go() -> list[tuple[str, str]]:
        nc = await nats.connect(system.nats_url)
        try:
            js = nc.jetstream()
            last = (await js.stream_info(RELEASE_STREAM)).state.last_seq
            out = []
            for seq in range(1, last + 1):
                raw = await js.get_msg(RELEASE_STREAM, seq)
                release = decode_release(raw.data)
                out.append((release.job_id, release.scheduler))
            return out
        finally:
            await nc.close()

    return asyncio.run(go())


def running_at_once(system: System, owner: str) -> int:
    """The most jobs of `owner` between their started and final events at once."""
    owner_of, most, now = owners_of(system), 0, 0
    for m in decodable(system.events()):
        if owner_of.get(m.event.job_id) != owner:
            continue
        if m.type == "started":
            now += 1
        elif m.type in FINAL_TYPES and now:
            now -= 1
        most = max(most, now)
    return most


def test_weighted_shares_priorities_and_a_running_limit(system: System) -> None:
    keys = keys_file(system.root, ["erin weight=3", "frank", "grace", "carol max_running=1 priorities=high,normal"])
    start_scheduler(system, MOCHI_API_KEYS_FILE=keys)
    # Everything is queued before a lane frees, so every choice sees every owner.
    erin, frank, grace = submit(system, "erin", 12), submit(system, "frank", 5), submit(system, "grace", 5)
    carol_normal = submit(system, "carol", 2)
    carol_high = submit(system, "carol", 1, "high")
    start_runners(system, 2)
    # Whole rounds of the stride: the weights sum to 6 (erin 3, the others 1),
    # so every 6 releases give erin 3 and each other owner 1.
    window = 18
    wait_until(lambda: len(releases(system)) >= window, timeout=300, what=f"{window} releases")
    owner_of = owners_of(system)
    first = [owner_of[job_id] for job_id, _ in releases(system)[:window]]
    shares = Counter(first)
    # Weights 3:1:1 (carol, limited to one at a time, takes her share too).
    assert abs(shares["erin"] / shares["frank"] - 3.0) <= 0.3, shares
    assert abs(shares["frank"] / (shares["frank"] + shares["grace"]) - 0.5) <= 0.05, shares
    # Carol's high job overtook her normal ones; never more than one of hers ran.
    carol_order = [job_id for job_id, _ in releases(system) if owner_of[job_id] == "carol"]
    assert carol_order[0] == carol_high[0], carol_order
    assert carol_order[1:] == carol_normal[: len(carol_order) - 1]
    wait_until(lambda: set(carol_normal + carol_high) <= finished(system), timeout=300, what="carol's jobs done")
    assert running_at_once(system, "carol") == 1
    # Every release became a start, once.
    started = {j for _, j in starts(system)}
    assert {j for j, _ in releases(system)} - started <= set(erin + frank + grace)  # the newest may be starting
    assert not run_twice(system)


def test_the_leader_killed_mid_burst_hands_over_within_seconds(system: System) -> None:
    system.start_catalog()
    first = start_scheduler(system, "scheduler-a")
    second = start_scheduler(system, "scheduler-b")
    start_runners(system, 2)
    jobs = submit(system, "heidi", 6) + submit(system, "ivan", 6)
    wait_until(lambda: len(starts(system)) >= 3, timeout=180, what="three jobs started")

    async def holder() -> str | None:
        nc = await nats.connect(system.nats_url)
        try:
            return await holder_of(await nc.jetstream().key_value(SCHEDULER_LEASE_BUCKET))
        finally:
            await nc.close()

    leader = asyncio.run(holder())
    assert leader in ("scheduler-a", "scheduler-b")
    killed, survivor = (first, second) if leader == "scheduler-a" else (second, first)
    killed.kill()
    killed_at = time.monotonic()
    wait_until(lambda: asyncio.run(holder()) == survivor.name, timeout=LEASE_TTL_S + 10, every=0.1,
               what="the other replica took the lease")
    took_over_s = time.monotonic() - killed_at
    assert took_over_s <= LEASE_TTL_S + 2.0, took_over_s
    wait_until(lambda: set(jobs) <= finished(system), timeout=300, what="every job finished")
    assert any(scheduler == survivor.name for _, scheduler in releases(system))
    outcome = check_invariants(system, system.root / "catalog.db")
    assert set(outcome.values()) == {"completed"} and set(outcome) == set(jobs)
    assert Counter(j for _, j in starts(system)) == Counter(jobs)  # none lost, none run twice
    assert len(releases(system)) == len(jobs)  # none released twice


def planned_order(system: System) -> list[str]:
    """The scheduler leader's plan, as the API reads it (empty before the first)."""
    async def go() -> list[str]:
        nc = await nats.connect(system.nats_url)
        try:
            kv = await nc.jetstream().key_value(SCHEDULER_QUEUE_BUCKET)
            try:
                entry = await kv.get(SCHEDULER_QUEUE_KEY)
            except KeyNotFoundError:
                return []
            return decode_queue_order(entry.value or b"").jobs
        finally:
            await nc.close()

    return asyncio.run(go())


def test_queue_positions_follow_the_schedulers_order(system: System) -> None:
    """Alice queued five, then Bob one: with no free lane nothing is released,
    and Bob's position is the scheduler's (second, after Alice's head), not
    sixth as the submit order counts; the API reads the leader's plan."""
    system.start_catalog()
    system.start_api(**FAIR)
    scheduler = start_scheduler(system)
    alice = submit(system, "alice", 5)
    bob = submit(system, "bob", 1)
    client = system.client()
    wait_until(lambda: planned_order(system) == [alice[0], bob[0], *alice[1:]], timeout=30,
               what="the leader's plan with bob second")
    wait_until(lambda: client.get(bob[0]).queue_position == 2, timeout=30, what="bob's position from the plan")
    assert [client.get(job_id).queue_position for job_id in alice] == [1, 3, 4, 5, 6]
    # Nothing has run, so no pace is measured: no start is made up for a job behind another.
    bob_job = client.get(bob[0])
    assert bob_job.status == "queued" and bob_job.estimated_start_at is None
    assert client.get(alice[0]).estimated_start_at is not None  # next, on an idle lane: now
    # The per-owner gauges (no keys file: the owners seen are the labels).
    wait_until(lambda: 'mochi_scheduler_queued_jobs{owner="alice"} 5.0' in scraped(scheduler), timeout=10,
               what="alice's queued gauge")
    metrics = scraped(scheduler)
    assert 'mochi_scheduler_queued_jobs{owner="bob"} 1.0' in metrics
    assert 'mochi_scheduler_running_jobs{owner="alice"} 0.0' in metrics
    assert 'mochi_scheduler_out_jobs{owner="bob"} 0.0' in metrics


def scraped(proc: Proc) -> str:
    with urllib.request.urlopen(f"{proc.health_url}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_mochi_up_in_fair_mode_starts_the_scheduler(tmp_path: Path, tiny_model: Path) -> None:
    """`mochi up --scheduling fair`: the runner takes releases, so a job that
    completes went through the scheduler (its release is in the stream)."""
    data = tmp_path / "var"
    (data / "models").mkdir(parents=True)
    (data / "models" / "tiny-mochi").symlink_to(tiny_model)  # built once per session by the fixture
    api_port, nats_port = free_port(), free_port()
    up = spawn("up", [sys.executable, "-m", "mochi_cli", "up", "--data", str(data), "--port", str(api_port),
                      "--nats-port", str(nats_port), "--scheduling", "fair"], {}, tmp_path / "logs")
    try:
        url = f"http://127.0.0.1:{api_port}"
        wait_for_http(f"{url}/readyz", timeout=180, proc=up.popen)
        client = MochiClient(url)
        job = client.submit("a cat in fair mode", seed=1, **TINY)
        done = client.wait(job.id, timeout=300)
        assert done.status == "completed", done.error
        system = System(root=tmp_path, model_dir=tiny_model, nats_port=nats_port)
        assert [job_id for job_id, scheduler in releases(system)] == [job.id]
        assert releases(system)[0][1] == "local-scheduler"
    finally:
        code = up.stop(timeout=60)
        if code != 0:
            print(up.log()[-4000:])
    assert code == 0


def test_a_queued_jobs_start_is_the_running_jobs_own_finish(system: System) -> None:
    """One lane, alice's long job on it: bob's job, next in line, starts when
    alice's finishes (its own estimate), not after an average of recent jobs
    (none has completed here, so an average would give no estimate at all)."""
    system.start_catalog()
    system.start_api(**FAIR)
    start_scheduler(system)
    start_runners(system, 1)
    client = system.client()
    # Big enough (about 8 times SMALL's work a step) that at least seconds are left
    # once the API sees it running, however fast the machine.
    long = client.submit("alice's long job", seed=1,
                         **{**SMALL, "width": 128, "height": 128, "num_frames": 13, "num_inference_steps": 200})
    wait_until(lambda: client.get(long.id).progress.step >= 3, timeout=120, what="alice's job under way")
    bob = submit(system, "bob", 1)[0]

    def agree():  # noqa: ANN202
        # The API reads the running jobs from the catalog at most once a second,
        # and the catalog lags the stream by a moment: wait for both to see alice running.
        # A start of "now" from a read that does not list alice yet must not pass
        # for agreement: it has to lie ahead, as alice's finish does.
        queued, running = client.get(bob), client.get(long.id)
        start, finish = queued.estimated_start_at, running.estimated_finish_at
        ahead = datetime.now(UTC) + timedelta(seconds=2)
        if start and finish and start > ahead and abs((start - finish).total_seconds()) <= 1.5:
            return queued, running
        return None

    queued, running = wait_until(agree, timeout=30, what="bob's start at alice's finish")
    assert queued.status == "queued" and queued.queue_position == 1
    assert running.status == "running" and running.progress.step < 200

"""What happens when parts die: every job still ends exactly once."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from conftest import SMALL
from waits import wait_until

# Long enough on two cores to be caught mid-render (about 60 ms a step).
SLOW = {"width": 128, "height": 128, "num_frames": 7, "num_inference_steps": 150}
FAST_REDELIVERY = {"MOCHI_ACK_WAIT_S": "3"}


def stored_videos(system) -> list[Path]:
    root = system.root / "videos"
    # <id>.mp4, not the thumbnail clip <id>.clip.mp4 beside it
    return [p for p in root.rglob("*.mp4") if "." not in p.stem] if root.exists() else []


def progress_of(system, job_id: str) -> int:
    return max((m.event.step for m in system.events(f"mochi.jobs.{job_id}.progress")), default=0)


def runner_a_mid_job(system, settings: dict[str, str]):
    """The stack with one runner, runner-a, three steps into a slow job."""
    system.settings.update(settings)
    system.start_catalog()
    first = system.start_runner("runner-a", wait=True)
    system.start_api()
    client = system.client()
    job = client.submit("a cat walks on the grass", **SLOW)
    wait_until(lambda: progress_of(system, job.id) >= 3, timeout=60, what="runner-a mid-job")
    return first, client, job


def test_runner_killed_mid_job_is_redelivered_and_completes_once(system):
    first, client, job = runner_a_mid_job(system, FAST_REDELIVERY)
    first.kill()
    system.start_runner("runner-b")

    done = client.wait(job.id, timeout=180)
    assert done.status == "completed", done
    assert done.runner == "runner-b" and done.attempts == 2
    msgs = system.events(f"mochi.jobs.{job.id}.>")
    finals = [m for m in msgs if ".final." in m.subject]
    assert [m.type for m in finals] == ["completed"]
    assert [m.event.runner for m in msgs if m.type == "started"] == ["runner-a", "runner-b"]
    assert len(stored_videos(system)) == 1


def test_catalog_rebuilt_from_the_stream_equals_the_old_one(system):
    system.start_catalog()
    system.start_runner()
    system.start_api()
    client = system.client()
    ids = [client.submit(f"waves crash on rocks {i}", **SMALL).id for i in range(3)]
    client.cancel(ids[2])
    for job_id in ids:
        client.wait(job_id, timeout=120)
    wait_until(lambda: {j.status for j in client.list().jobs} == {"completed", "cancelled"}
               and len(client.list().jobs) == 3, what="catalog caught up")
    before = list(client.iter_jobs())

    catalog = system.procs[0]
    catalog.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{system.root / 'catalog.db'}{suffix}").unlink(missing_ok=True)
    system.start_catalog()
    after = list(client.iter_jobs())
    assert after == before
    assert [j.status for j in after] == ["cancelled", "completed", "completed"]


def test_job_submitted_while_no_runner_runs_later(system):
    system.start_catalog()
    system.start_api()
    client = system.client()
    job = client.submit("slow motion of a bird", **SMALL)
    time.sleep(2)
    queued = client.get(job.id)
    assert queued.status == "queued" and queued.queue_position == 1
    system.start_runner()
    assert client.wait(job.id, timeout=120).status == "completed"


def test_job_failing_on_every_delivery_ends_failed_with_its_reason(system):
    system.settings.update({**FAST_REDELIVERY, "MOCHI_MAX_DELIVER": "2"})
    system.start_catalog()
    system.start_runner(wait=True)
    system.start_api()
    # Break the store: every upload now fails the same way.
    videos = system.root / "videos"
    shutil.rmtree(videos)
    videos.write_text("not a directory")
    client = system.client()
    job = client.submit("a person dances", **SMALL)
    done = client.wait(job.id, timeout=120)
    assert done.status == "failed"
    assert "NotADirectoryError" in done.error and done.attempts == 2
    # The store is checked before a render starts, so neither attempt rendered.
    types = [m.type for m in system.events(f"mochi.jobs.{job.id}.>")]
    assert [t for t in types if t != "log"] == ["submitted", "failed"]
    # The job's own log has each attempt's error summary.
    errors = [line.message for line in client.logs(job.id) if line.level == "error"]
    assert len(errors) == 2 and all("NotADirectoryError" in e for e in errors), errors

    # The runner is still there for the next job once the store is back.
    videos.unlink()
    videos.mkdir()
    assert client.wait(client.submit("a red car", **SMALL).id, timeout=120).status == "completed"


def test_job_killing_its_runner_every_time_is_failed_from_the_dead_letters(system):
    system.settings.update({**FAST_REDELIVERY, "MOCHI_MAX_DELIVER": "2"})
    system.start_catalog()
    system.start_api()
    client = system.client()
    job = client.submit("a cat walks on the grass", **SLOW)
    for attempt, name in enumerate(["runner-a", "runner-b"], start=1):
        runner = system.start_runner(name)
        wait_until(lambda attempt=attempt: sum(1 for m in system.events(f"mochi.jobs.{job.id}.started")) == attempt,
                   timeout=60, what=f"delivery {attempt}")
        runner.kill()
    system.start_runner("runner-c")
    done = client.wait(job.id, timeout=120)
    assert done.status == "failed" and done.attempts == 2
    assert "gave up after 2 deliveries" in done.error
    assert not stored_videos(system)
    assert os.environ.get("MOCHI_MAX_DELIVER") is None  # the setting stayed in the test's processes


def test_sigterm_finishes_the_step_hands_the_job_back_and_exits(system):
    """SIGTERM mid-render: the runner stops after the step under way, hands the
    job back (nak) and exits 0; another runner starts it at once, not after the
    ack wait, and it completes once."""
    # A job not handed back would wait out its 2-minute ack wait.
    first, client, job = runner_a_mid_job(system, {"MOCHI_ACK_WAIT_S": "120"})
    assert first.stop(timeout=30) == 0
    stopped_at = progress_of(system, job.id)
    assert stopped_at < SLOW["num_inference_steps"]
    assert '"job.handed_back"' in first.log() and '"runner.stopped"' in first.log()

    second = system.start_runner("runner-b", wait=True)
    ready = time.monotonic()
    wait_until(lambda: [m for m in system.events(f"mochi.jobs.{job.id}.started") if m.event.runner == "runner-b"],
               timeout=60, what="runner-b to start the handed-back job")
    assert time.monotonic() - ready < 30, "the job waited for its ack wait instead of being handed back"
    done = client.wait(job.id, timeout=180)
    assert done.status == "completed" and done.runner == "runner-b" and done.attempts == 2, done
    msgs = system.events(f"mochi.jobs.{job.id}.>")
    assert [m.type for m in msgs if ".final." in m.subject] == ["completed"]
    assert len(stored_videos(system)) == 1
    assert second.alive()

"""Stop a runner mid-job and show its job finishes on another runner, once.

Part of `bench/system_run.py --hand-over` (issue 10): after the measured run,
two tries on the same stack. First SIGTERM: the runner finishes the step under
way, hands the job back (nak) and exits, so another runner starts it at once;
the stopped runner is then started again. Then SIGKILL: nothing is handed
back, and the job is redelivered after the consumer's ack wait. Each try
reports who started and who finished the job, how long the job waited for
another runner, its started/completed events read back from the stream, and
the stored videos (exactly one is the promise)."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from job_stream import job_events
from mochi_cli.processes import Proc, spawn_service, wait_for_http
from mochi_contracts.event_codec import decode_event
from mochi_contracts.events import JobCompleted, JobStarted


@dataclass
class RunnerProcess:
    """One runner of the stack and what it takes to start it again."""

    index: int
    env: dict[str, str]
    ready_url: str


def _wait(what: str, check, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise SystemExit(f"hand-over: gave up waiting for {what} after {timeout:.0f} s")


def stored_videos(root: Path, job_id: str) -> list[Path]:
    return sorted((root / "videos").rglob(f"{job_id}.mp4"))


def hand_over(report, stack, root: Path, url: str, nats_url: str, runners: list[RunnerProcess],
              body: dict, after_step: int, start_timeout: float) -> None:
    http = httpx.Client(base_url=url, timeout=30)
    procs = {f"runner-{r.index}": stack.procs[2 + r.index] for r in runners}
    for n, (label, how) in enumerate((("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL))):
        resp = http.post("/v1/jobs", json={**body, "seed": 1000 + n})
        resp.raise_for_status()
        job_id = resp.json()["id"]
        job = _wait(f"job {job_id} past step {after_step}",
                    lambda job_id=job_id: (j := http.get(f"/v1/jobs/{job_id}").json())["progress"]["step"] >= after_step
                    and j,
                    timeout=start_timeout)
        victim = job["runner"]
        proc: Proc = procs[victim]
        signalled = time.time()
        proc.popen.send_signal(how)
        code = proc.popen.wait(timeout=300)
        exited_s = time.time() - signalled
        done = _wait(f"job {job_id} to finish",
                     lambda job_id=job_id: (j := http.get(f"/v1/jobs/{job_id}").json())["status"]
                     not in ("queued", "running") and j, timeout=start_timeout + 1800, every=1.0)

        events = [decode_event(data, headers, subject)
                  for _, subject, headers, data in asyncio.run(job_events(nats_url)) if f".{job_id}." in subject]
        started = [e for e in events if isinstance(e, JobStarted)]
        completed = [e for e in events if isinstance(e, JobCompleted)]
        videos = stored_videos(root, job_id)
        restarted = next((e for e in started if e.runner != victim), None)
        report.add(f"hand_over.{label}", {
            "job": job_id, "signalled_runner": victim, "at_step": job["progress"]["step"],
            "runner_exit_code": code, "runner_exit_s": round(exited_s, 1),
            "status": done["status"], "completed_by": done["runner"], "attempts": done["attempts"],
            "started_elsewhere_after_s": round(restarted.time.timestamp() - signalled, 1) if restarted else None,
            "started_events": len(started), "completed_events": len(completed), "stored_videos": len(videos),
        }, "SIGTERM hands the job back at once; SIGKILL waits for the ack wait")
        if done["status"] != "completed" or len(completed) != 1 or len(videos) != 1:
            raise SystemExit(f"hand-over {label}: job {job_id} did not complete exactly once")
        if label == "sigterm":
            # Back to full strength for the second try, as a rollout would leave it.
            spec = next(r for r in runners if f"runner-{r.index}" == victim)
            fresh = spawn_service("runner", spec.env, root / "logs", name=f"{victim}-restarted")
            stack.procs[2 + spec.index] = procs[victim] = fresh
            wait_for_http(spec.ready_url, timeout=900, proc=fresh.popen)
    http.close()


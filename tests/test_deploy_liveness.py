"""The runner's livenessProbe, as the manifests wire it, against a real runner
process on the CPU: /healthz answers 200 while the runner loads, idles and
steps, and fails once a render has made no step for MOCHI_STEP_STALL_S, so the
kubelet restarts a runner whose GPU hangs mid-step (and its job goes back to
the queue). The stall is scaled down from the manifest's 600 s to one step of
a large render on the CPU: a step that outlasts it is, to the check, a hung
one. (SIGTERM while the model loads: test_runner_hardening.py.)"""

from __future__ import annotations

import signal

import httpx

from conftest import SMALL
from mochi_contracts.job_state import FINAL_STATUSES
from test_deploy_support import one
from waits import wait_until, watching_health

# One step of this size takes several seconds on the CPU with the tiny model
# (848x480 at 61 frames stepped in under 2.5 s on a busy 2-core machine, and
# this is 1.75x the tokens, about 3x the attention); a SMALL job's steps and
# decode take well under the stall. 50 steps: the SIGTERM lands while it still
# denoises, on a fast machine too. With 3 steps all were done before the stall
# showed, the decode (one long call, 85 s here) tripped it, and the runner then
# finished the job instead of handing it back.
SLOW_STEPS = {"width": 848, "height": 480, "num_frames": 163, "num_inference_steps": 50}
STALL_S = 2.0


def _runner_probe() -> tuple[dict, dict[str, str]]:
    (c,) = one("h100x8", "Deployment", "mochi-runner")["spec"]["template"]["spec"]["containers"]
    return c["livenessProbe"], {e["name"]: e.get("value") for e in c["env"]}


def _submit(system, body: dict) -> str:
    resp = httpx.post(f"{system.api_url}/v1/jobs", json=body, timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def _status(system, job_id: str) -> str:
    return httpx.get(f"{system.api_url}/v1/jobs/{job_id}", timeout=10).json()["status"]


def test_healthz_fails_while_a_render_makes_no_step(system) -> None:
    probe, env = _runner_probe()
    assert probe["httpGet"]["path"] == "/healthz" and float(env["MOCHI_STEP_STALL_S"]) > 0
    system.start_catalog()
    runner = system.start_runner(wait=True, MOCHI_STEP_STALL_S=str(STALL_S))
    system.start_api()
    with watching_health(f"{runner.health_url}/healthz") as seen:
        # Idle, then a render that steps: alive throughout.
        quick = _submit(system, {"prompt": "quick steps", **SMALL})
        wait_until(lambda: _status(system, quick) == "completed", timeout=120, what="the quick job")
        assert seen and all(code == 200 for code, _ in seen), [s for s in seen if s[0] != 200][:3]
        # A step that outlasts the stall: the probe fails, naming the job.
        slow = _submit(system, {"prompt": "a step that hangs", **SLOW_STEPS})
        wait_until(lambda: any(code == 503 and f"job {slow} made no step" in text for code, text in seen),
                   timeout=240, what="/healthz failing on the stalled render")
        assert runner.popen.poll() is None, "the check reports; the kubelet restarts"
    # What the kubelet then does: SIGTERM; the runner hands the job back at its
    # step and exits, and the job is not lost (test_resume.py: where it resumes).
    runner.popen.send_signal(signal.SIGTERM)
    assert runner.popen.wait(timeout=120) == 0
    assert '"job.handed_back"' in runner.log()
    assert _status(system, slow) not in FINAL_STATUSES

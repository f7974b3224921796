"""How long a newcomer waits for a first video (issue 24): from `mochi up` on a
fresh working folder (no model built, no job rendered) to the first completed
video of the web form's first draft, over the API as the form sends it.

On a fresh folder nothing is measured yet, so the form opens on its smallest
draft (web/js/presets.js DRAFTS[0]); the figures are the stack's start (nats,
catalog, API, a runner that builds the tiny model and warms up), then the
render, encode and store of that job.

    .venv/bin/python bench/first_video.py [--out var/bench]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

# web/js/presets.js DRAFTS[0]: what the form opens on before anything was measured.
FIRST_DRAFT = {"prompt": "a paper boat drifting on a pond", "width": 256, "height": 144, "num_frames": 13,
               "fps": 12, "num_inference_steps": 8}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if check():
                return time.perf_counter()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="mochi-first-video-"))
    port, nats_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}"
    mochi = Path(sys.executable).with_name("mochi")
    started = time.perf_counter()
    up = subprocess.Popen([str(mochi), "up", "--data", str(data), "--port", str(port), "--nats-port", str(nats_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        figures: dict[str, object] = {"data": str(data), "draft": FIRST_DRAFT}
        api_up = wait_for(lambda: httpx.get(f"{api}/readyz", timeout=2).status_code == 200, args.timeout,
                          "the API ready")
        figures["api_ready_s"] = round(api_up - started, 2)
        # The form can be submitted once the page is up; the job then waits for the runner.
        job = httpx.post(f"{api}/v1/jobs", json=FIRST_DRAFT, timeout=10).json()

        def state() -> dict:
            return httpx.get(f"{api}/v1/jobs/{job['id']}", timeout=5).json()

        started_at = wait_for(lambda: state()["status"] != "queued", args.timeout, "the job started")
        figures["job_started_s"] = round(started_at - started, 2)
        done_at = wait_for(lambda: state()["final"], args.timeout, "the job final")
        final = state()
        figures["status"] = final["status"]
        figures["first_video_s"] = round(done_at - started, 2)
        figures["render_s"] = round(done_at - started_at, 2)
        if final["status"] == "completed":
            video = httpx.get(f"{api}/v1/jobs/{job['id']}/video", timeout=30, follow_redirects=True)
            figures["video_bytes"] = len(video.content)
        print(json.dumps(figures, indent=1))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "first_video.json").write_text(json.dumps(figures, indent=1))
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


if __name__ == "__main__":
    main()

"""Soak: many small jobs through the tiny model with several runners.

Prints: jobs per hour, whether the runners worked at the same time (from the
events), jobs lost or run twice, denoising steps rendered twice, whether the catalog equals a rebuild from
the stream, and each process's resident memory at the start, middle and end.

    .venv/bin/python bench/soak.py --jobs 2000 --runners 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

from mochi_contracts.events import FINAL_TYPES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import System  # noqa: E402  (the tests' stack helper, reused as is)
from invariants import check_invariants, denoising_steps_rendered_twice  # noqa: E402

BODY = {"prompt": "soak", "width": 64, "height": 64, "num_frames": 7, "num_inference_steps": 2}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def busy_overlap(msgs) -> tuple[float, dict[str, int]]:  # type: ignore[no-untyped-def]
    """Seconds during which every runner had a job, and jobs per runner."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    started: dict[str, tuple[str, float]] = {}
    for m in msgs:
        ev = m.event
        t = ev.time.timestamp()
        if m.type == "started":
            started[ev.job_id] = (ev.runner, t)
        elif m.type in FINAL_TYPES and ev.job_id in started:
            runner, t0 = started.pop(ev.job_id)
            spans[runner].append((t0, t))
    per_runner = {r: len(s) for r, s in spans.items()}
    if len(spans) < 2:
        return 0.0, per_runner
    # Sweep over the start/end points: time with every runner busy.
    points = sorted((t, d, r) for r, ss in spans.items() for a, b in ss for t, d in ((a, 1), (b, -1)))
    busy: Counter[str] = Counter()
    overlap, last = 0.0, None
    for t, d, r in points:
        if last is not None and all(busy[x] > 0 for x in spans):
            overlap += t - last
        busy[r] += d
        last = t
    return overlap, per_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--submitters", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mochi-soak-") as tmp:
        root = Path(tmp)
        from mochi_runner.tiny_model import save_tiny_model

        system = System(root=root, model_dir=save_tiny_model(root / "tiny-mochi"))
        system.settings.update({"MOCHI_LOG_LEVEL": "warning"})
        system.start_nats()
        system.start_catalog()
        for i in range(args.runners):
            system.start_runner(f"runner-{i}", wait=True)
        system.start_api(MOCHI_SUBMITS_PER_MINUTE="100000000", MOCHI_MAX_QUEUED_PER_OWNER="0")
        procs = {p.name: p.popen.pid for p in system.procs}
        memory: dict[str, list[float]] = {n: [rss_mib(pid)] for n, pid in procs.items()}
        ids: list[str] = []
        lock = threading.Lock()
        started = time.monotonic()

        def submitter(n: int) -> None:
            with httpx.Client(base_url=system.api_url, timeout=30) as http:
                for _ in range(n):
                    jid = http.post("/v1/jobs", json=BODY).raise_for_status().json()["id"]
                    with lock:
                        ids.append(jid)

        per = [args.jobs // args.submitters + (1 if i < args.jobs % args.submitters else 0)
               for i in range(args.submitters)]
        threads = [threading.Thread(target=submitter, args=(n,)) for n in per]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        submitted_s = time.monotonic() - started
        client = system.client()
        half = False
        while True:
            page = client.list(status=["queued", "running"], limit=1)
            if not page.jobs:
                break
            done = len(list(client.iter_jobs(status=["completed"], page_size=100))) if not half else 0
            if not half and done >= args.jobs // 2:
                for n, pid in procs.items():
                    memory[n].append(rss_mib(pid))
                half = True
            time.sleep(2)
        elapsed = time.monotonic() - started
        for n, pid in procs.items():
            memory[n].append(rss_mib(pid))
        msgs = system.events()
        outcome = check_invariants(system, root / "catalog.db")
        starts = Counter(m.event.job_id for m in msgs if m.type == "started")
        overlap, per_runner = busy_overlap(msgs)
        completed = sum(1 for v in outcome.values() if v == "completed")
        print(f"\nsoak: {args.jobs} jobs ({BODY['width']}x{BODY['height']}, {BODY['num_frames']} frames, "
              f"{BODY['num_inference_steps']} steps, tiny random model, CPU), {args.runners} runners")
        print(f"submitted in {submitted_s:.1f} s; all final after {elapsed:.1f} s "
              f"-> {completed / elapsed * 3600:.0f} jobs/hour")
        print(f"completed {completed}, other final {len(outcome) - completed}, "
              f"lost {len(set(ids)) - len(outcome)}, rendered twice {sum(1 for c in starts.values() if c > 1)}")
        print(f"denoising steps rendered twice: {sum(denoising_steps_rendered_twice(msgs).values())}")
        print(f"jobs per runner {per_runner}; all runners busy at once for {overlap:.1f} s")
        print("catalog equals a rebuild from the stream: yes (checked)")
        print("resident memory MiB (start / middle / end):")
        for n, values in memory.items():
            print(f"  {n:<12} " + " / ".join(f"{v:.0f}" for v in values))
        system.stop()


if __name__ == "__main__":
    main()

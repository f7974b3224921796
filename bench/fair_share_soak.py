"""Soak of fair-share scheduling: three owners, two CPU runners on the tiny
model, two scheduler replicas (the leader SIGKILLed halfway unless --no-kill).

Owner `bulk` queues a burst first, `steady` one job every few seconds, and
`late` a burst once the others are under way; weights from a keys file
(default 1:1:1). Prints per-owner shares of the starts while all three had
work queued, the longest wait (submitted -> started) of each owner's first job
and of any job, and the jobs lost (no final event), run twice (more than one
started or completed event) and released twice.

    .venv/bin/python bench/fair_share_soak.py --bulk 24 --steady 8 --late 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import System  # noqa: E402  (the tests' stack helper, reused as is)
from invariants import check_invariants  # noqa: E402
from stream_reader import decodable  # noqa: E402
from test_fair_share import keys_file, releases, start_runners, start_scheduler, submit  # noqa: E402

from mochi_contracts.events import FINAL_TYPES  # noqa: E402
from mochi_runner.tiny_model import save_tiny_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bulk", type=int, default=24)
    ap.add_argument("--steady", type=int, default=8)
    ap.add_argument("--steady-every-s", type=float, default=4.0)
    ap.add_argument("--late", type=int, default=8)
    ap.add_argument("--late-after-s", type=float, default=20.0)
    ap.add_argument("--weights", default="1,1,1", help="bulk,steady,late")
    ap.add_argument("--no-kill", action="store_true")
    args = ap.parse_args()
    weights = dict(zip(("bulk", "steady", "late"), args.weights.split(","), strict=True))
    with tempfile.TemporaryDirectory(prefix="fair-soak-") as tmp:
        root = Path(tmp)
        system = System(root=root, model_dir=save_tiny_model(root / "tiny-mochi"))
        system.start_nats()
        try:
            run(system, args, weights)
        finally:
            system.stop()


def run(system: System, args: argparse.Namespace, weights: dict[str, str]) -> None:
    keys = keys_file(system.root, [f"{owner} weight={w}" for owner, w in weights.items()])
    system.start_catalog()
    schedulers = [start_scheduler(system, f"scheduler-{i}", MOCHI_API_KEYS_FILE=keys) for i in range(2)]
    start_runners(system, 2)
    began = time.monotonic()
    ids: dict[str, list[str]] = {"bulk": submit(system, "bulk", args.bulk), "steady": [], "late": []}

    def steady() -> None:
        for _ in range(args.steady):
            ids["steady"] += submit(system, "steady", 1)
            time.sleep(args.steady_every_s)

    feeder = threading.Thread(target=steady)
    feeder.start()
    time.sleep(args.late_after_s)
    ids["late"] = submit(system, "late", args.late)
    killed_at = None
    if not args.no_kill:
        leader = next(p for p in schedulers if '"scheduler.leader"' in p.log() and p.alive())
        leader.kill()
        killed_at = time.monotonic() - began
    feeder.join()
    every = {j for js in ids.values() for j in js}
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        done = {m.event.job_id for m in decodable(system.events()) if m.type in FINAL_TYPES}
        if every <= done:
            break
        time.sleep(2)
    report(system, ids, killed_at, time.monotonic() - began)


def report(system: System, ids: dict[str, list[str]], killed_at: float | None, seconds: float) -> None:
    msgs = decodable(system.events())
    owner_of = {j: o for o, js in ids.items() for j in js}
    submitted = {m.event.job_id: m.event.time for m in msgs if m.type == "submitted"}
    started: dict[str, list] = {}
    completed = Counter(m.event.job_id for m in msgs if m.type == "completed")
    finals = {m.event.job_id for m in msgs if m.type in FINAL_TYPES}
    order = []
    for m in msgs:
        if m.type == "started":
            started.setdefault(m.event.job_id, []).append(m.event.time)
            order.append(m.event.job_id)
    # The window: the starts at which every owner had a job waiting (submitted, not yet started).
    def waiting(owner: str, at) -> bool:  # type: ignore[no-untyped-def]
        return any(submitted[j] < at and (j not in started or started[j][0] >= at) for j in ids[owner])

    window = [j for j in order if all(waiting(o, started[j][0]) for o in ids)]
    cut = len(window)
    shares = Counter(owner_of[j] for j in window[:cut])
    total = sum(shares.values()) or 1
    print(f"jobs: {len(owner_of)} in {seconds:.0f}s; leader killed at {killed_at:.0f}s" if killed_at
          else f"jobs: {len(owner_of)} in {seconds:.0f}s; no kill")
    print(f"window with all three owners backlogged: {cut} starts")
    for owner in ids:
        firsts = [(started[j][0] - submitted[j]).total_seconds() for j in ids[owner][:1] if j in started]
        waits = [(started[j][0] - submitted[j]).total_seconds() for j in ids[owner] if j in started]
        print(f"  {owner:<7} share {shares[owner] / total:6.1%}  first job waited {firsts[0] if firsts else -1:6.1f}s"
              f"  longest wait {max(waits, default=-1):6.1f}s")
    lost = [j for j in owner_of if j not in finals]
    twice = [j for j in owner_of if len(started.get(j, [])) > 1 or completed[j] > 1]
    released = Counter(j for j, _ in releases(system))
    print(f"lost: {len(lost)}  run twice: {len(twice)}  released twice: {sum(1 for n in released.values() if n > 1)}")
    check_invariants(system, system.root / "catalog.db")
    print("invariants: one final event per job, videos match, catalog equals a rebuild")


if __name__ == "__main__":
    main()

"""What must hold after any fault: read the whole stream, as `nats stream
view` would, and compare it with the store and the catalog."""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

from mochi_catalog.projection import Projection, RawEvent
from mochi_contracts.events import FINAL_TYPES
from stream_reader import decodable
from waits import wait_until


def catalog_rows(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT id, owner, status, submitted_seq, last_seq, state FROM jobs")}


def applied_seq(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT applied_seq FROM progress WHERE name = 'jobs'").fetchone()[0]


def rebuild(messages) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        projection = Projection(Path(tmp) / "rebuild.db")
        projection.apply_batch([RawEvent(m.seq, m.subject, m.data, m.headers) for m in messages])
        projection.close()
        return catalog_rows(Path(tmp) / "rebuild.db")


def denoising_steps_rendered_twice(messages) -> Counter:  # type: ignore[no-untyped-def]
    """Per job, the denoising steps rendered by more than one attempt (each
    extra rendering counts): what a SIGKILL costs past the last checkpoint.
    Read from the stream: an attempt's progress events follow its started
    event (from the same runner), which says the step it resumed after; a step
    rendered but killed before its progress event went out is not seen."""
    twice: Counter = Counter()
    rendered: dict[str, Counter] = {}
    current: dict[tuple[str, str], int] = {}  # (job, runner) -> the attempt it runs now
    seen: set[tuple[str, int, int]] = set()  # (job, attempt, step)
    for m in decodable(messages):
        event = m.event
        if m.type == "started":
            current[(event.job_id, event.runner)] = event.attempt
            rendered.setdefault(event.job_id, Counter())
            twice[event.job_id] += 0
        elif m.type == "progress":
            attempt = current.get((event.job_id, event.runner), 0)
            if (event.job_id, attempt, event.step) in seen:
                continue  # a re-published event of the same attempt
            seen.add((event.job_id, attempt, event.step))
            steps = rendered.setdefault(event.job_id, Counter())
            if steps[event.step]:
                twice[event.job_id] += 1
            steps[event.step] += 1
    return twice


def check_invariants(system, catalog_db: Path | None = None, all_final: bool = True,
                     max_steps_rendered_twice: int | None = None) -> dict[str, str]:
    """Each submitted job has exactly one final event (all_final) or at most
    one; a stored video exactly for the completed ones; the catalog equals a
    rebuild from the stream; with max_steps_rendered_twice, no job rendered
    more denoising steps again than that (checkpoint interval times the
    deliveries it lost). Returns job id -> final type."""
    messages = system.events()
    if max_steps_rendered_twice is not None:
        twice = denoising_steps_rendered_twice(messages)
        worst = max(twice.values(), default=0)
        assert worst <= max_steps_rendered_twice, f"steps rendered twice: {dict(+twice)}"
    good = decodable(messages)
    submitted = {m.event.job_id for m in good if m.type == "submitted"}
    finals = Counter(m.event.job_id for m in good if m.type in FINAL_TYPES)
    outcome = {m.event.job_id: m.type for m in good if m.type in FINAL_TYPES}
    for job_id in submitted:
        assert finals[job_id] <= 1, f"{job_id} has {finals[job_id]} final events"
        if all_final:
            assert finals[job_id] == 1, f"{job_id} never finished"
    videos = Counter(p.stem for p in (system.root / "videos").rglob("*.mp4") if "." not in p.stem)  # not <id>.clip.mp4
    assert all(n == 1 for n in videos.values())
    completed = {j for j, t in outcome.items() if t == "completed"}
    assert set(videos) == completed, (set(videos) ^ completed)
    if catalog_db is not None:
        # A runner that lost its job to a redelivery may still publish a few
        # events after this read: compare once the stream and the catalog stand still.
        for _ in range(20):
            last = messages[-1].seq if messages else 0
            wait_until(lambda last=last: applied_seq(catalog_db) >= last, timeout=60, what="catalog caught up")
            again = system.events()
            if (again[-1].seq if again else 0) == last and applied_seq(catalog_db) == last:
                break
            messages = again
        assert catalog_rows(catalog_db) == rebuild(messages)
    return outcome

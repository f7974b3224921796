"""A catalog replica whose SQLite file is damaged stops answering and reports
itself unready, rebuilds from the stream and answers again; meanwhile the API
answers 503 problem+json, never 500."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time

import httpx
import nats

from conftest import SMALL
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import JobLog
from mochi_contracts.streams import JOBS_STREAM
from waits import wait_until


def _damage(db) -> None:  # noqa: ANN001
    """Overwrite every page but the first with garbage, as a failing disk would.
    First a write from another connection (so the catalog's page cache is
    stale and its next read goes to the file) and a checkpoint (so the pages
    are in the main file, not the WAL)."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE progress SET applied_seq = applied_seq")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(max(size - 4096, 4096 * 8)))


def test_a_damaged_catalog_rebuilds_and_the_api_never_answers_500(system):
    catalog = system.start_catalog()
    system.start_api()
    api = httpx.Client(base_url=system.api_url, timeout=10)
    ids = [api.post("/v1/jobs", json={"prompt": f"a fox in the snow {i}", **SMALL}).json()["id"] for i in range(12)]
    db = system.root / "catalog.db"
    wait_until(lambda: len(api.get("/v1/jobs?limit=50").json()["jobs"]) == 12, timeout=30,
               what="the catalog has the jobs")

    # Enough events that a rebuild takes a moment to watch.
    asyncio.run(_publish_log_lines(system.nats_url, ids[0], 3000))
    wait_until(lambda: "log lines applied" if _applied(catalog) >= 3012 else None, timeout=60,
               what="the log lines applied")
    # The catalog's /readyz, watched from the damage until the end of the test.
    ready: list[int] = []
    watching = threading.Event()
    watching.set()

    def watch() -> None:
        while watching.is_set():
            # A probe waits while a batch is applied (SQLite runs on the event loop).
            ready.append(httpx.get(f"{catalog.health_url}/readyz", timeout=30).status_code)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    _damage(db)
    watcher.start()
    # More events (the cancels) and reads find it.
    answers: list[httpx.Response] = []
    for i in range(40):
        if i < len(ids):
            assert api.post(f"/v1/jobs/{ids[i]}/cancel").status_code in (200, 202, 409, 503)
        answers.append(api.get("/v1/jobs?limit=50"))
    statuses = [r.status_code for r in answers]
    assert 500 not in statuses, statuses
    # Meanwhile the API says the catalog is unavailable, as problem+json a client may retry.
    for resp in answers:
        if resp.status_code != 200:
            assert resp.status_code == 503, resp.text
            assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
            assert resp.headers.get("retry-after"), resp.headers

    # Back to a full, correct list once the rebuild from the stream is done.
    def rebuilt() -> bool:
        resp = api.get("/v1/jobs?limit=50")
        assert resp.status_code in (200, 503), resp.text
        return resp.status_code == 200 and {j["id"] for j in resp.json()["jobs"]} == set(ids) and all(
            j["status"] == "cancelled" for j in resp.json()["jobs"])

    wait_until(rebuilt, timeout=60, what="the catalog rebuilt from the stream")
    metrics = httpx.get(f"{catalog.health_url}/metrics", timeout=5).text
    rebuilds = [line for line in metrics.splitlines() if line.startswith("mochi_catalog_database_rebuilds_total")]
    assert rebuilds and float(rebuilds[0].split()[-1]) >= 1, rebuilds
    assert httpx.get(f"{catalog.health_url}/readyz", timeout=5).status_code == 200
    watching.clear()
    watcher.join(timeout=10)
    # The replica reported itself unready while it rebuilt, and ready again after.
    assert 503 in ready and ready[-1] == 200, ready
    assert set(ready) <= {200, 503}, ready


async def _publish_log_lines(nats_url: str, job_id: str, n: int) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for i in range(n):
        body, headers = encode_event(JobLog(job_id=job_id, level="info", message=f"line {i}"))
        await js.publish(subjects.job_logs(job_id), body, headers=headers, stream=JOBS_STREAM)
    await nc.close()


def _applied(catalog) -> float:  # noqa: ANN001
    text = httpx.get(f"{catalog.health_url}/metrics", timeout=5).text
    found = [line for line in text.splitlines() if line.startswith("mochi_catalog_applied_sequence ")]
    return float(found[0].split()[-1]) if found else 0.0


def test_a_catalog_started_on_a_file_that_is_no_database_rebuilds_it(system):
    db = system.root / "catalog.db"
    db.write_bytes(b"this is not a database" * 500)
    system.start_catalog()
    system.start_api()
    api = httpx.Client(base_url=system.api_url, timeout=10)
    job = api.post("/v1/jobs", json={"prompt": "a fox in the snow", **SMALL}).json()
    wait_until(lambda: [j["id"] for j in api.get("/v1/jobs").json()["jobs"]] == [job["id"]], timeout=30,
               what="the catalog lists the job")

"""A catalog replica whose SQLite file is damaged stops answering, rebuilds
from the stream and answers again; meanwhile the API answers 503, never 500."""

from __future__ import annotations

import os
import sqlite3

import httpx

from conftest import SMALL
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

    _damage(db)
    # More events (the cancels) and reads find it.
    statuses: list[int] = []
    for i in range(40):
        if i < len(ids):
            assert api.post(f"/v1/jobs/{ids[i]}/cancel").status_code in (200, 202, 409, 503)
        statuses.append(api.get("/v1/jobs?limit=50").status_code)
    assert 500 not in statuses, statuses

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


def test_a_catalog_started_on_a_file_that_is_no_database_rebuilds_it(system):
    db = system.root / "catalog.db"
    db.write_bytes(b"this is not a database" * 500)
    system.start_catalog()
    system.start_api()
    api = httpx.Client(base_url=system.api_url, timeout=10)
    job = api.post("/v1/jobs", json={"prompt": "a fox in the snow", **SMALL}).json()
    wait_until(lambda: [j["id"] for j in api.get("/v1/jobs").json()["jobs"]] == [job["id"]], timeout=30,
               what="the catalog lists the job")

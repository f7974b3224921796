"""The job list in SQLite, built only from events.

Each batch of events is applied in one transaction together with the last
applied stream sequence, so a crash never leaves rows and sequence apart and
a restart resumes exactly after the last event that took effect."""

from __future__ import annotations

import builtins
import sqlite3
from pathlib import Path

import msgspec
import sqlite_utils

from mochi_catalog import metrics
from mochi_contracts.event_codec import UnreadableEvent, decode_event
from mochi_contracts.events import JobSubmitted
from mochi_contracts.job_state import JobState, apply, new_state
from mochi_contracts.pace import mean_run_seconds

_encode = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(JobState).decode


class RawEvent(msgspec.Struct, frozen=True):
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]


class Projection:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(path)
        self.db.conn.execute("PRAGMA journal_mode=WAL")
        self.db.conn.execute("PRAGMA synchronous=NORMAL")
        self._create()

    def _table(self, name: str) -> sqlite_utils.db.Table:
        # db[name] may also be a View; every name here is one of our tables.
        return self.db.table(name)

    def _create(self) -> None:
        jobs = self._table("jobs")
        if not jobs.exists():
            jobs.create({"id": str, "owner": str, "status": str, "submitted_seq": int,
                         "last_seq": int, "state": str}, pk="id")
            jobs.create_index(["owner", "submitted_seq"])
            jobs.create_index(["status", "submitted_seq"])
            jobs.create_index(["submitted_seq"], unique=True)
        if not self._table("progress").exists():
            self._table("progress").create({"name": str, "applied_seq": int}, pk="name")
            self._table("progress").insert({"name": "jobs", "applied_seq": 0})
        if not self._table("rejected_events").exists():
            self._table("rejected_events").create(
                {"seq": int, "subject": str, "reason": str}, pk="seq")

    def check(self) -> None:
        """Raise sqlite3.DatabaseError unless the file is a sound database."""
        found = self.db.execute("PRAGMA quick_check").fetchone()
        if found is None or found[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {found[0] if found else 'no answer'}")

    def applied_seq(self) -> int:
        return int(self._table("progress").get("jobs")["applied_seq"])

    def _load(self, job_id: str) -> JobState | None:
        row = self.db.execute("SELECT state FROM jobs WHERE id = ?", [job_id]).fetchone()
        return _decode_state(row[0]) if row else None

    def apply_batch(self, events: list[RawEvent]) -> int:
        """Apply events in stream order; return how many changed a job."""
        if not events:
            return 0
        changed: dict[str, JobState] = {}
        rejected: list[dict[str, object]] = []
        unreadable = 0
        floor = self.applied_seq()
        for raw in events:
            if raw.seq <= floor:
                continue  # applied before: replaying it must change nothing
            try:
                event = decode_event(raw.data, raw.headers, raw.subject)
            except UnreadableEvent as err:
                rejected.append({"seq": raw.seq, "subject": raw.subject, "reason": str(err)})
                unreadable += 1
                continue
            state = changed.get(event.job_id) or self._load(event.job_id)
            if state is None:
                if isinstance(event, JobSubmitted):
                    changed[event.job_id] = new_state(event, raw.seq)
                else:
                    rejected.append({"seq": raw.seq, "subject": raw.subject,
                                     "reason": "event for a job never submitted"})
                continue
            if isinstance(event, JobSubmitted):
                continue  # a resubmission under the same id is ignored
            new = apply(state, event, raw.seq)
            if new is not state:
                changed[event.job_id] = new
        with self.db.conn:
            if changed:
                self._table("jobs").upsert_all(
                    ({"id": s.id, "owner": s.owner, "status": s.status,
                      "submitted_seq": s.submitted_seq, "last_seq": s.last_seq,
                      "state": _encode(s).decode()} for s in changed.values()),
                    pk="id")
            if rejected:
                self._table("rejected_events").upsert_all(rejected, pk="seq")
            self._table("progress").update("jobs", {"applied_seq": events[-1].seq})
        past_floor = sum(1 for raw in events if raw.seq > floor)
        metrics.events_applied(past_floor - len(rejected), {
            "unreadable": unreadable, "unknown_job": len(rejected) - unreadable})
        return len(changed)

    # ---- queries -------------------------------------------------------

    def get(self, job_id: str, owner: str | None) -> JobState | None:
        state = self._load(job_id)
        if state is None or (owner is not None and state.owner != owner):
            return None
        return state

    def queue_position(self, state: JobState) -> int | None:
        if state.status != "queued":
            return None
        row = self.db.execute(
            "SELECT count(*) FROM jobs WHERE status = 'queued' AND submitted_seq <= ?",
            [state.submitted_seq]).fetchone()
        return int(row[0])

    def pace(self) -> tuple[float | None, int]:
        """Mean seconds of the last 20 completed renders, and how many jobs run now."""
        recent = self.db.execute(
            "SELECT state FROM jobs WHERE status = 'completed' ORDER BY submitted_seq DESC LIMIT 20").fetchall()
        running = self.db.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()[0]
        return mean_run_seconds(_decode_state(row[0]) for row in recent), int(running)

    def list(self, owner: str | None, statuses: list[str] | None, limit: int,
             before_seq: int | None) -> tuple[list[JobState], int | None]:
        where: builtins.list[str] = []
        params: builtins.list[object] = []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        if before_seq is not None:
            where.append("submitted_seq < ?")
            params.append(before_seq)
        sql = "SELECT state FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY submitted_seq DESC LIMIT ?"
        rows = self.db.execute(sql, [*params, limit + 1]).fetchall()
        jobs = [_decode_state(r[0]) for r in rows[:limit]]
        more = len(rows) > limit
        return jobs, (jobs[-1].submitted_seq if more and jobs else None)

    def count_by_status(self) -> dict[str, int]:
        return {str(status): int(n) for status, n in
                self.db.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()}

    def rejected(self) -> builtins.list[dict[str, object]]:  # `list` here is the method above
        return list(self._table("rejected_events").rows)

    def close(self) -> None:
        self.db.close()

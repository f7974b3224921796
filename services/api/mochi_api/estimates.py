"""When a queued job should start: the jobs ahead shared over the runners, at
the pace of recent renders (mochi_contracts.pace.mean_run_seconds, which the
catalog sends). A running job's own finish is mochi_contracts.pace."""

from __future__ import annotations

from datetime import datetime, timedelta


def estimated_start(position: int | None, mean_job_s: float | None, running: int, now: datetime
                    ) -> datetime | None:
    if position is None or mean_job_s is None:
        return None
    runners = max(running, 1)
    # Jobs ahead are shared over the runners; a busy runner is half done on average.
    wait_s = ((position - 1) / runners + (0.5 if running else 0.0)) * mean_job_s
    return now + timedelta(seconds=wait_s)

from __future__ import annotations

from prometheus_client import Counter, Gauge

from mochi_scheduler.fair_share import FairShare

LEADER = Gauge("mochi_scheduler_leader", "1 while this replica holds the leader lease")
QUEUED = Gauge("mochi_scheduler_queued_jobs", "Jobs waiting for release, by owner", ["owner"])
OUT = Gauge("mochi_scheduler_out_jobs", "Jobs released and not final (running or about to), by owner", ["owner"])
RELEASED = Counter("mochi_scheduler_releases_total", "Jobs this replica released, by owner", ["owner"])
FREE_LANES = Gauge("mochi_scheduler_free_lanes", "Runner lanes waiting for work at the last look")
DEAD = Counter("mochi_scheduler_dead_letters_total", "Released jobs failed after their deliveries ran out")


def refresh(model: FairShare) -> None:
    for owner, n in model.queued_by_owner().items():
        QUEUED.labels(owner).set(n)
    for owner, n in model.out_by_owner().items():
        OUT.labels(owner).set(n)

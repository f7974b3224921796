"""The scheduler's Prometheus metrics (MOCHI_HEALTH_PORT /metrics).

Per-owner series are labelled with the owner, which the API stamps from the
key's name in the keys file, so their number is bounded by that file. The
scheduler also reads submissions a foreign publisher may have written with any
owner: with a keys file, an owner not in it is counted under `other`; without
one (the single-user embedded stack, owner `anonymous`), the first
MAX_OWNER_LABELS owners seen get their own label and the rest `other`."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge

from mochi_scheduler.fair_share import FairShare

LEADER = Gauge("mochi_scheduler_leader", "1 while this replica holds the leader lease")
QUEUED = Gauge("mochi_scheduler_queued_jobs", "Jobs waiting for release, by owner", ["owner"])
OUT = Gauge("mochi_scheduler_out_jobs", "Jobs released and not final (running or about to), by owner", ["owner"])
RUNNING = Gauge("mochi_scheduler_running_jobs", "Jobs a runner started and not final, by owner", ["owner"])
RELEASED = Counter("mochi_scheduler_releases_total", "Jobs this replica released, by owner", ["owner"])
FREE_LANES = Gauge("mochi_scheduler_free_lanes", "Runner lanes waiting for work at the last look")
DEAD = Counter("mochi_scheduler_dead_letters_total", "Released jobs failed after their deliveries ran out")

OTHER = "other"
MAX_OWNER_LABELS = 50


class OwnerLabels:
    """Owner -> label value, bounded (see the module's docstring)."""

    def __init__(self, known: frozenset[str] | None):
        self.known = known  # None: no keys file
        self.seen: set[str] = set()

    def __call__(self, owner: str) -> str:
        if self.known is not None:
            return owner if owner in self.known else OTHER
        if owner in self.seen or len(self.seen) < MAX_OWNER_LABELS:
            self.seen.add(owner)
            return owner
        return OTHER


def refresh(model: FairShare, label: OwnerLabels) -> None:
    for gauge, counts in ((QUEUED, model.queued_by_owner()), (OUT, model.out_by_owner()),
                          (RUNNING, model.running_by_owner())):
        by_label: Tally[str] = Tally()
        for owner, n in counts.items():
            by_label[label(owner)] += n
        for value, n in by_label.items():
            gauge.labels(value).set(n)

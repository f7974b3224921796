"""Who runs next: weighted fair share between owners, priorities within one.

Stride scheduling: each owner has a `pass`, the share it has used; releasing
one of its jobs adds 1/weight. The next job comes from the backlogged owner
with the lowest pass (the one furthest below its share), and within an owner
from the highest priority, oldest first. An owner that becomes backlogged
starts at the pass of the latest release (the system's clock), never below: it
gets no credit for the time it had nothing queued, so an owner returning from
idle shares from now on rather than taking every lane until it has caught up,
and it is next (ties go to the owner with fewer jobs out, then the oldest
head). A per-owner limit on jobs out (released, not yet final) holds across
every runner, since every release goes through here.

Pure and deterministic: every scheduler replica applies the same submissions,
releases and finals from the streams to its own copy, so a follower that takes
over holds the same queues and nearly the same passes."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from mochi_contracts.scheduling import RANK


@dataclass(frozen=True, order=True)
class QueuedJob:
    rank: int
    seq: int
    job_id: str = field(compare=False)
    owner: str = field(compare=False)
    priority: str = field(compare=False)


@dataclass
class Owner:
    name: str
    queue: list[QueuedJob] = field(default_factory=list)  # a heap on (rank, seq)
    out: set[str] = field(default_factory=set)  # released, not final
    running: set[str] = field(default_factory=set)  # started, not final (for metrics)
    passed: float = 0.0
    released: int = 0


@dataclass(frozen=True)
class Policy:
    weight: float = 1.0
    max_running: int = 0  # 0: no limit
    allowed: frozenset[str] = frozenset(RANK)


# How many final job ids a copy remembers. The job stream is read in order, so
# a job's submission and start never come after its final; only a release,
# read from the other stream, can arrive late, and never by this many finals.
# Bounded so a scheduler that runs for months holds a fixed set, not every job.
FINISHED_KEPT = 100_000


class FairShare:
    def __init__(self, policy_of: Callable[[str], Policy], finished_kept: int = FINISHED_KEPT):
        self.policy_of = policy_of
        self.owners: dict[str, Owner] = {}
        self.queued: dict[str, QueuedJob] = {}  # job id -> its place in a queue
        self.out: dict[str, str] = {}  # job id -> owner, released and not final
        self.finished: OrderedDict[str, None] = OrderedDict()  # the latest finals, oldest first
        self.finished_kept = finished_kept
        # Released before this copy saw their submission (two streams, read apart).
        self.released_early: set[str] = set()
        self.clock = 0.0

    # ---- what the streams tell ----------------------------------------------

    def submitted(self, job_id: str, owner: str, priority: str, seq: int) -> None:
        if job_id in self.finished or job_id in self.queued or job_id in self.out:
            return
        who = self._owner(owner)
        if job_id in self.released_early:
            self.released_early.discard(job_id)
            who.out.add(job_id)
            self.out[job_id] = owner
            return
        job = QueuedJob(RANK[self._effective(owner, priority)], seq, job_id, owner, priority)
        if not who.queue:
            who.passed = max(who.passed, self.clock)
        heapq.heappush(who.queue, job)
        self.queued[job_id] = job

    def released(self, job_id: str) -> bool:
        """A release of this job is stored (by this replica as leader or read
        from the stream): it is out, and its owner is charged once."""
        if job_id in self.out or job_id in self.finished:
            return False
        job = self.queued.pop(job_id, None)
        if job is None:
            self.released_early.add(job_id)
            return False
        who = self.owners[job.owner]
        who.queue.remove(job)
        heapq.heapify(who.queue)
        self.clock = max(self.clock, who.passed)
        who.passed += 1.0 / self.policy_of(job.owner).weight
        who.released += 1
        who.out.add(job_id)
        self.out[job_id] = job.owner
        return True

    def started(self, job_id: str) -> None:
        """A runner started it (seen on the job stream). It counts as running
        for the metrics only; shares and limits count jobs out."""
        if job_id in self.finished:
            return
        job = self.queued.get(job_id)
        owner = job.owner if job is not None else self.out.get(job_id)
        if owner is not None:
            self.owners[owner].running.add(job_id)

    def final(self, job_id: str) -> None:
        """Completed, failed, cancelled (also while queued) or expired."""
        self.finished[job_id] = None
        if len(self.finished) > self.finished_kept:
            self.finished.popitem(last=False)
        self.released_early.discard(job_id)
        job = self.queued.pop(job_id, None)
        if job is not None:
            who = self.owners[job.owner]
            who.queue.remove(job)
            heapq.heapify(who.queue)
            who.running.discard(job_id)
        owner = self.out.pop(job_id, None)
        if owner is not None:
            self.owners[owner].out.discard(job_id)
            self.owners[owner].running.discard(job_id)

    # ---- the choice ------------------------------------------------------------

    def next(self) -> QueuedJob | None:
        """The job to release now, or None (nothing queued, or every backlogged
        owner at its running limit). Not taken until `released()` says so."""
        best: tuple[float, int, int, int] | None = None
        choice: QueuedJob | None = None
        for who in self.owners.values():
            if not who.queue:
                continue
            limit = self.policy_of(who.name).max_running
            if limit and len(who.out) >= limit:
                continue
            head = who.queue[0]
            key = (who.passed, len(who.out), head.seq, 0)
            if best is None or key < best:
                best, choice = key, head
        return choice

    def order(self, limit: int = 1000) -> list[QueuedJob]:
        """The queued jobs in the order they would be released if nothing new
        came (running limits ignored): for queue positions."""
        passed = {name: who.passed for name, who in self.owners.items()}
        heads = {name: sorted(who.queue) for name, who in self.owners.items() if who.queue}
        out = {name: len(who.out) for name, who in self.owners.items()}
        result: list[QueuedJob] = []
        while heads and len(result) < limit:
            name = min(heads, key=lambda n: (passed[n], out[n], heads[n][0].seq))
            result.append(heads[name].pop(0))
            passed[name] += 1.0 / self.policy_of(name).weight
            out[name] += 1
            if not heads[name]:
                del heads[name]
        return result

    # ---- helpers ---------------------------------------------------------------

    def _owner(self, name: str) -> Owner:
        who = self.owners.get(name)
        if who is None:
            who = self.owners[name] = Owner(name, passed=self.clock)
        return who

    def _effective(self, owner: str, priority: str) -> str:
        """The priority a job is ranked at: what it asked if its owner may use
        it, else the nearest allowed one below (or the lowest allowed)."""
        allowed = self.policy_of(owner).allowed
        if priority in allowed:
            return priority
        below = [p for p in RANK if RANK[p] > RANK[priority] and p in allowed]
        if below:
            return below[0]
        return max(allowed, key=RANK.__getitem__) if allowed else "low"

    def queued_by_owner(self) -> dict[str, int]:
        return {name: len(who.queue) for name, who in self.owners.items()}

    def out_by_owner(self) -> dict[str, int]:
        return {name: len(who.out) for name, who in self.owners.items()}

    def running_by_owner(self) -> dict[str, int]:
        return {name: len(who.running) for name, who in self.owners.items()}

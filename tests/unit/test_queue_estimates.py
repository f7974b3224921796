"""The API's queue place in each mode (mochi_api.queue_estimates): fair mode
takes the scheduler's published plan, a job the plan does not list keeps the
catalog's count, fifo mode never reads the plan; the start builds on the
running jobs the catalog lists. The catalog and the KV bucket are stand-ins
here; tests/test_fair_share.py runs the real ones."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from nats.errors import NoRespondersError
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from mochi_api.queue_estimates import QueueEstimates
from mochi_contracts import catalog
from mochi_contracts.events import JobProgress, JobStarted
from mochi_contracts.job_state import JobState, apply, new_state
from mochi_contracts.scheduling import QueueOrder, encode_queue_order

from .events import STEPS, T0, submitted
from .test_pace_after_steps import rendered

QUEUED = "a" * 32
RUNNING = "b" * 32


class Entry:
    def __init__(self, value: bytes):
        self.value = value


class Bucket:
    def __init__(self, order: QueueOrder | None):
        self.order = order

    async def get(self, key: str) -> Entry:
        if self.order is None:
            raise KeyNotFoundError
        return Entry(encode_queue_order(self.order))


class JetStream:
    def __init__(self, bucket: Bucket | None):
        self.bucket = bucket
        self.asked = 0

    async def key_value(self, name: str) -> Bucket:
        self.asked += 1
        if self.bucket is None:
            raise BucketNotFoundError
        return self.bucket


def running_job() -> JobState:
    state = apply(new_state(submitted(RUNNING), 1), JobStarted(job_id=RUNNING, time=T0, runner="r1", attempt=1), 2)
    return apply(state, JobProgress(job_id=RUNNING, time=T0 + timedelta(seconds=2), step=2, total_steps=STEPS,
                                    runner="r1"), 3)


class Catalog:
    def __init__(self, running: list[JobState], down: bool = False, completed: list[JobState] | None = None,
                 queued: list[JobState] | None = None):
        self.by_status = {"running": running, "completed": completed or [], "queued": queued or []}
        self.down = down

    async def __call__(self, query: catalog.ListJobs) -> catalog.JobPage:
        if self.down:
            raise NoRespondersError
        assert query.status is not None and len(query.status) == 1
        return catalog.JobPage(jobs=self.by_status[query.status[0]], next_before_seq=None, applied_seq=10)


def ask(estimates: QueueEstimates, position: int | None = 5, mean_s: float | None = 10.0):  # noqa: ANN201
    return asyncio.run(estimates.queued(new_state(submitted(QUEUED), 4), position, mean_s, now=T0))


def test_fair_mode_takes_the_plans_place_and_builds_on_the_running_job():
    plan = QueueOrder(jobs=["c" * 32, QUEUED], out=1, scheduler="s")
    position, start = ask(QueueEstimates(JetStream(Bucket(plan)), Catalog([running_job()]), "fair"))
    assert position == 2
    # The running job: 1 s per step, 2 of 8 done at T0+2 s -> frees at T0+8 s; one job ahead, 10 s.
    assert start == T0 + timedelta(seconds=18)


def test_a_job_the_plan_does_not_list_keeps_the_catalogs_count():
    # Written before the job was submitted (T0+1 s): the leader had not seen it.
    plan = QueueOrder(jobs=["c" * 32], out=0, queued=1, scheduler="s", time=T0)
    assert ask(QueueEstimates(JetStream(Bucket(plan)), Catalog([]), "fair"))[0] == 5
    assert ask(QueueEstimates(JetStream(Bucket(None)), Catalog([]), "fair"))[0] == 5  # no plan written
    assert ask(QueueEstimates(JetStream(None), Catalog([]), "fair"))[0] == 5  # no scheduler ever led


def test_fifo_mode_never_reads_the_plan():
    js = JetStream(Bucket(QueueOrder(jobs=[QUEUED], scheduler="s")))
    assert ask(QueueEstimates(js, Catalog([]), "fifo"))[0] == 5
    assert js.asked == 0


def test_without_the_catalog_the_estimate_still_answers_from_what_it_last_read():
    estimates = QueueEstimates(JetStream(None), Catalog([], down=True), "fifo")
    position, start = ask(estimates, position=1)
    assert position == 1 and start == T0  # nothing known running: the next job starts now
    assert ask(estimates, position=None) == (None, None)  # not queued


def test_the_jobs_ahead_take_their_work_at_the_measured_pace_not_the_catalogs_mean():
    done = rendered(0.0, "d" * 32)  # 8 steps of 1 s, nothing after the last: 8 s of work at this size
    queued = [new_state(submitted(job_id), 4) for job_id in ("e" * 32, QUEUED)]
    estimates = QueueEstimates(JetStream(None), Catalog([], completed=[done], queued=queued), "fifo")
    # Second in line on an idle lane: behind one job of 8 s, whatever the catalog's mean (here 100 s).
    assert ask(estimates, position=2, mean_s=100.0) == (2, T0 + timedelta(seconds=8))


def test_a_job_out_of_a_complete_plan_written_after_it_was_submitted_is_released_and_next():
    # The job was submitted at T0+1 s (events.submitted); the plan lists only another job.
    later = QueueOrder(jobs=["c" * 32], queued=1, scheduler="s", time=T0 + timedelta(seconds=10))
    assert ask(QueueEstimates(JetStream(Bucket(later)), Catalog([]), "fair")) == (1, T0)
    # Written too soon after the submission to be sure the leader saw it: the catalog's count.
    soon = QueueOrder(jobs=["c" * 32], queued=1, scheduler="s", time=T0 + timedelta(seconds=2))
    assert ask(QueueEstimates(JetStream(Bucket(soon)), Catalog([]), "fair"))[0] == 5
    # A plan cut short (1 of 2000 queued jobs listed) says nothing of the others.
    cut = QueueOrder(jobs=["c" * 32], queued=2000, scheduler="s", time=T0 + timedelta(seconds=10))
    assert ask(QueueEstimates(JetStream(Bucket(cut)), Catalog([]), "fair"))[0] == 5

"""The scheduler's per-owner metrics (queued, out, running) with bounded labels,
and the planned order it publishes for queue positions (mochi_scheduler)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from mochi_contracts.scheduling import decode_queue_order, encode_queue_order
from mochi_scheduler import metrics
from mochi_scheduler.fair_share import FairShare, Policy
from mochi_scheduler.queue_order import planned


def _model() -> FairShare:
    return FairShare(lambda owner: Policy(weight=3.0) if owner == "erin" else Policy())


def _job(n: int) -> str:
    return f"{n:032x}"


def _gauge(name: str, owner: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"owner": owner})


def test_queued_out_and_running_per_owner():
    model = _model()
    for n in range(3):
        model.submitted(_job(n), "alice", "normal", seq=n)
    model.submitted(_job(10), "bob", "normal", seq=10)
    assert model.released(_job(0)) and model.released(_job(10))
    model.started(_job(0))
    assert model.queued_by_owner() == {"alice": 2, "bob": 0}
    assert model.out_by_owner() == {"alice": 1, "bob": 1}
    assert model.running_by_owner() == {"alice": 1, "bob": 0}  # bob's is released, not started yet
    model.final(_job(0))
    model.final(_job(1))  # cancelled while queued
    assert model.queued_by_owner() == {"alice": 1, "bob": 0}
    assert model.running_by_owner() == {"alice": 0, "bob": 0} and model.out_by_owner()["alice"] == 0
    model.started(_job(0))  # a late start of a finished job counts nothing
    assert model.running_by_owner()["alice"] == 0


def test_labels_are_the_keys_files_owners_and_other_for_the_rest():
    label = metrics.OwnerLabels(frozenset({"alice", "bob"}))
    assert [label(o) for o in ("alice", "bob", "mallory", "eve")] == ["alice", "bob", "other", "other"]
    model = _model()
    model.submitted(_job(20), "alice", "normal", seq=20)
    for n, owner in enumerate(("mallory", "eve"), start=21):
        model.submitted(_job(n), owner, "normal", seq=n)
    metrics.refresh(model, label)
    assert _gauge("mochi_scheduler_queued_jobs", "alice") == 1
    assert _gauge("mochi_scheduler_queued_jobs", "other") == 2
    assert _gauge("mochi_scheduler_queued_jobs", "mallory") is None


def test_without_a_keys_file_labels_stop_at_the_bound():
    label = metrics.OwnerLabels(None)
    names = [label(f"owner{i}") for i in range(metrics.MAX_OWNER_LABELS + 10)]
    assert len(set(names)) == metrics.MAX_OWNER_LABELS + 1 and names[-1] == "other"
    assert label("owner0") == "owner0"  # one seen keeps its label


def test_the_plan_is_the_release_order_and_round_trips():
    model = _model()
    alice = [_job(30 + n) for n in range(4)]
    for n, job_id in enumerate(alice):
        model.submitted(job_id, "alice", "normal", seq=30 + n)
    model.submitted(_job(40), "erin", "normal", seq=40)
    model.submitted(_job(41), "erin", "normal", seq=41)
    plan = decode_queue_order(encode_queue_order(planned(model, "scheduler-a")))
    assert plan.scheduler == "scheduler-a" and plan.out == 0 and plan.queued == 6 == len(plan.jobs)
    released = []
    while (job := model.next()) is not None:
        model.released(job.job_id)
        released.append(job.job_id)
    assert plan.jobs == released
    # Alice came first, then erin (weight 3) runs her two before alice's second.
    assert plan.jobs[:4] == [alice[0], _job(40), _job(41), alice[1]]

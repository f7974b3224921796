"""The fair-share choice (mochi_scheduler.fair_share) and the keys file's
scheduling settings, without processes: lanes are simulated by releasing the
chosen job and ending the oldest one out."""

from __future__ import annotations

import itertools
from collections import Counter, deque
from pathlib import Path

import pytest

from mochi_api.api_keys import KeyFileError, parse_keys_file
from mochi_scheduler.fair_share import FairShare, Policy

_ids = itertools.count()


def _model(policies: dict[str, Policy] | None = None) -> FairShare:
    table = policies or {}
    return FairShare(lambda owner: table.get(owner, Policy()))


def _submit(model: FairShare, owner: str, n: int, priority: str = "normal") -> list[str]:
    ids = []
    for _ in range(n):
        i = next(_ids)
        job_id = f"{i:032x}"
        model.submitted(job_id, owner, priority, seq=i)
        ids.append(job_id)
    return ids


def _run(model: FairShare, lanes: int, starts: int) -> list[str]:
    """Release into `lanes` lanes; each new start ends the oldest job out."""
    out: deque[str] = deque()
    started = []
    while len(started) < starts:
        if len(out) >= lanes:
            model.final(out.popleft())
        job = model.next()
        if job is None:
            if not out:
                break
            model.final(out.popleft())
            continue
        assert model.released(job.job_id)
        out.append(job.job_id)
        started.append(job.owner)
    return started


def test_a_late_owner_is_next() -> None:
    model = _model()
    _submit(model, "a", 30)
    assert _run(model, lanes=2, starts=6) == ["a"] * 6
    _submit(model, "b", 3)
    assert model.next().owner == "b"


@pytest.mark.parametrize("lanes", [1, 2, 5])
def test_equal_weights_split_evenly(lanes: int) -> None:
    model = _model()
    _submit(model, "a", 100)
    _submit(model, "b", 100)
    shares = Counter(_run(model, lanes, starts=100))
    assert abs(shares["a"] - 50) <= 5 and abs(shares["b"] - 50) <= 5, shares


@pytest.mark.parametrize("lanes", [1, 2, 5])
def test_weights_three_to_one(lanes: int) -> None:
    model = _model({"a": Policy(weight=3.0)})
    _submit(model, "a", 200)
    _submit(model, "b", 200)
    shares = Counter(_run(model, lanes, starts=100))
    assert abs(shares["a"] / shares["b"] - 3.0) <= 0.3, shares


def test_high_overtakes_the_owners_normal_jobs_and_order_holds_within_one() -> None:
    model = _model()
    normal = _submit(model, "a", 5)
    high = _submit(model, "a", 2, "high")
    low = _submit(model, "a", 1, "low")
    order = []
    while (job := model.next()) is not None:
        model.released(job.job_id)
        order.append(job.job_id)
    assert order == high + normal + low


def test_a_priority_the_owner_may_not_use_is_ranked_below() -> None:
    model = _model({"a": Policy(allowed=frozenset({"normal", "low"}))})
    normal = _submit(model, "a", 2)
    high = _submit(model, "a", 1, "high")  # ranked as normal: after the two before it
    order = []
    while (job := model.next()) is not None:
        model.released(job.job_id)
        order.append(job.job_id)
    assert order == normal + high


def test_running_limit_holds_and_frees_lanes_for_others() -> None:
    model = _model({"a": Policy(max_running=2)})
    _submit(model, "a", 10)
    first = model.next()
    model.released(first.job_id)
    second = model.next()
    model.released(second.job_id)
    assert model.next() is None  # a has two out, nobody else waits
    b = _submit(model, "b", 1)
    assert model.next().job_id == b[0]
    model.final(first.job_id)
    assert model.next().owner in ("a", "b")
    assert len(model.owners["a"].out) == 1


def test_cancelled_while_queued_is_never_released() -> None:
    model = _model()
    a = _submit(model, "a", 2)
    model.final(a[0])
    assert model.next().job_id == a[1]


def test_the_finished_ids_kept_are_bounded_and_a_late_release_of_a_kept_one_is_ignored() -> None:
    model = FairShare(lambda owner: Policy(), finished_kept=3)
    ids = _submit(model, "a", 5)
    for job_id in ids:
        assert model.released(model.next().job_id)
        model.final(job_id)
    assert list(model.finished) == ids[2:]
    # A release read after its job's final (the two streams are read apart).
    assert not model.released(ids[-1]) and ids[-1] not in model.out
    assert model.owners["a"].out == set()


def test_a_release_seen_before_its_submission_counts_once() -> None:
    model = _model()
    model.released("f" * 32)
    model.submitted("f" * 32, "a", "normal", seq=1)
    assert model.next() is None and model.out == {"f" * 32: "a"}
    assert not model.released("f" * 32)


def test_order_is_the_release_order() -> None:
    model = _model({"a": Policy(weight=2.0)})
    _submit(model, "a", 4)
    _submit(model, "b", 4)
    planned = [j.job_id for j in model.order()]
    actual = []
    while (job := model.next()) is not None:
        model.released(job.job_id)
        actual.append(job.job_id)
    assert planned == actual


def _hash(n: int) -> str:
    return f"{n:064x}"


def test_keys_file_scheduling_settings(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"alice {_hash(1)} weight=3 priorities=high,normal max_running=2\n"
                    f"alice {_hash(2)}\n"
                    f"bob {_hash(3)}\n"
                    f"root {_hash(4)} admin\n")
    by_hash, policies = parse_keys_file(str(path))
    assert by_hash[_hash(2)].owner == "alice"
    assert policies["alice"].share_weight == 3.0 and policies["alice"].max_running == 2
    assert policies["alice"].allowed_priorities == {"high", "normal"}
    assert policies["bob"].share_weight == 1.0 and policies["bob"].allowed_priorities == {"normal", "low"}
    assert policies["root"].allowed_priorities == {"high", "normal", "low"}


@pytest.mark.parametrize("line", ["weight=0", "weight=x", "max_running=0", "priorities=urgent", "colour=red",
                                  "superuser"])
def test_keys_file_bad_settings_name_the_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "keys"
    path.write_text(f"alice {_hash(1)}\nbob {_hash(2)} {line}\n")
    with pytest.raises(KeyFileError, match=":2:"):
        parse_keys_file(str(path))


def test_keys_file_owner_settings_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"alice {_hash(1)} weight=2\nalice {_hash(2)} weight=3\n")
    with pytest.raises(KeyFileError, match="weight of alice differs"):
        parse_keys_file(str(path))

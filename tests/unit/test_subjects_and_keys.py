"""Job-stream subjects read back into (job id, event type), and the one store
key per job."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mochi_contracts import subjects
from mochi_contracts.events import FINAL_TYPES
from mochi_contracts.storage import video_key

from .events import KINDS, pure

job_ids = st.text("0123456789abcdef", min_size=32, max_size=32)
TYPES = [k for k in KINDS if k != "webhook"] + ["submitted"]


@pure
@given(job_ids, st.sampled_from(TYPES))
def test_event_subjects_read_back(job_id, kind):
    subject = subjects.event_subject(job_id, kind)
    assert subjects.parse_event_subject(subject) == (job_id, kind)
    assert (".final." in subject) == (kind in FINAL_TYPES)
    assert subjects.job_id_of(subject) == job_id


@pure
@given(job_ids, st.integers(0, 2**63 - 1))
def test_webhook_attempt_subjects_read_back(job_id, seq):
    assert subjects.parse_event_subject(subjects.webhook_attempts(job_id, seq)) == (job_id, "webhook")


J = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("subject", [
    "", "mochi", "mochi.jobs", f"mochi.jobs.{J}", f"mochi.jobs.{J}.completed",  # a final type outside final.
    f"mochi.jobs.{J}.final.started", f"mochi.jobs.{J}.final.completed.x", f"mochi.jobs.{J}.webhook",
    f"mochi.jobs.{J}.webhook.x", f"mochi.jobs.{J}.webhook.-1", f"mochi.jobs.{J}.webhook.١٢",
    f"mochi.jobs.{J}.webhook.{'9' * 21}", f"mochi.jobs.{J}.nope", f"mochi.jobs.{J.upper()}.started",
    f"mochi.jobs.{J[:-1]}.started", f"mochi.dispatch.{J}.started", f"other.jobs.{J}.started",
    f"mochi.jobs.{J}.started.", f"mochi.jobs..{J}.started", f"mochi.jobs.{J}.log.extra"])
def test_subjects_no_event_may_have(subject):
    assert subjects.parse_event_subject(subject) is None


@pure
@given(st.text(max_size=80) | st.builds(lambda j, rest: f"mochi.jobs.{j}.{rest}", job_ids, st.text(max_size=30)))
def test_any_subject_parses_to_one_that_builds_it_back_or_to_none(subject):
    parsed = subjects.parse_event_subject(subject)
    if parsed is not None:
        job_id, kind = parsed
        if kind == "webhook":
            prefix, _, seq = subject.rpartition(".")
            assert prefix == subjects.webhook_attempts(job_id, 0).rpartition(".")[0]
            assert seq.isascii() and seq.isdigit() and len(seq) <= 20
        else:
            assert subject == subjects.event_subject(job_id, kind)


def test_building_a_subject_refuses_what_is_not_a_job_id():
    for bad in ["", "x", J.upper(), J + "0", J + "\n", "0123456789abcdef.123456789abcdef", "*" * 32, ">" * 32]:
        with pytest.raises(ValueError):
            subjects.event_subject(bad, "started")


@pure
@given(job_ids)
def test_video_key_is_the_jobs_own_under_a_two_character_shard(job_id):
    assert video_key(job_id) == f"videos/{job_id[:2]}/{job_id}.mp4"


@pure
@given(job_ids, job_ids)
def test_video_keys_of_two_jobs_differ(a, b):
    assert (video_key(a) == video_key(b)) == (a == b)

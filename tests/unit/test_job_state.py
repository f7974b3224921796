"""How events fold into a job: the order of a normal life, finals never left,
replays changing nothing, webhook deliveries tracked after the end."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from mochi_contracts.job_state import FINAL_STATUSES, JobState, apply, new_state
from mochi_contracts.storage import video_key

from .events import JOB, STEPS, at, attempt, completed, later_kinds, one_of_kinds, pure, submitted


def fold(kinds: list[str], first_seq: int = 2) -> tuple[JobState, list[tuple[int, object]]]:
    state = new_state(submitted(), 1)
    applied = []
    for seq, kind in enumerate(kinds, start=first_seq):
        event = one_of_kinds(seq, kind)
        applied.append((seq, event))
        state = apply(state, event, seq)
    return state, applied


def test_new_state_is_queued_with_the_request():
    state = new_state(submitted(), 5)
    assert (state.id, state.owner, state.status) == (JOB, "alice", "queued")
    assert state.submitted_seq == state.last_seq == 5
    assert state.created_at == state.updated_at == at(1)
    assert state.total_steps == STEPS and state.step == 0 and state.webhook_deliveries == []


def test_a_normal_life_queued_running_completed():
    state = new_state(submitted(), 1)
    state = apply(state, one_of_kinds(2, "started"), 2)
    assert (state.status, state.runner, state.attempts, state.started_at) == ("running", "r1", 1, at(2))
    state = apply(state, one_of_kinds(3, "progress"), 3)
    assert (state.step, state.last_step_at) == (4, at(3))
    state = apply(state, completed(4), 4)
    assert state.status == "completed" and state.finished_at == at(4)
    assert state.step == STEPS and state.video is not None and state.video.key == video_key(JOB)
    assert state.last_seq == 4 and state.updated_at == at(4)


def test_a_restart_keeps_the_first_start_and_resets_the_step():
    state, _ = fold(["started", "progress", "started"])
    assert state.started_at == at(2) and state.step == 0 and state.status == "running"


def test_cancel_requested_is_a_flag_not_an_end():
    state, _ = fold(["started", "cancel_requested"])
    assert state.status == "running" and state.cancel_requested


def test_a_log_line_moves_only_the_sequence_and_time():
    before, _ = fold(["started", "progress"])
    after = apply(before, one_of_kinds(9, "log"), 9)
    assert msgspec.structs.replace(after, last_seq=before.last_seq, updated_at=before.updated_at) == before


@pure
@given(later_kinds)
def test_nothing_moves_a_job_out_of_its_final_status(kinds):
    state = new_state(submitted(), 1)
    final = None
    for seq, kind in enumerate(kinds, start=2):
        state = apply(state, one_of_kinds(seq, kind), seq)
        if final is None and state.status in FINAL_STATUSES:
            final = (state.status, state.finished_at, state.error, state.video, state.attempts)
        if final is not None:
            assert (state.status, state.finished_at, state.error, state.video, state.attempts) == final
        assert state.last_seq == seq
    first_final = next((k for k in kinds if k in FINAL_STATUSES), None)
    assert (final[0] if final else None) == first_final


@pure
@given(later_kinds, st.data())
def test_a_replayed_event_changes_nothing(kinds, data):
    state, applied = fold(kinds)
    if applied:
        seq, event = data.draw(st.sampled_from(applied))
        assert apply(state, event, seq) is state
    assert apply(state, submitted(), 1) is state
    # And the whole history again, in order, leaves it as it is.
    again = state
    for seq, event in applied:
        again = apply(again, event, seq)
    assert again == state


@pure
@given(later_kinds)
def test_folding_is_a_function_of_the_events(kinds):
    assert fold(kinds)[0] == fold(kinds)[0]


def test_webhook_deliveries_follow_their_attempts_after_the_end():
    state, _ = fold(["started", "completed"])
    state = apply(state, attempt(4, "msg_a", 1, "retrying"), 4)
    state = apply(state, attempt(5, "msg_b", 1, "failed"), 5)
    state = apply(state, attempt(6, "msg_a", 2, "delivered"), 6)
    assert state.status == "completed"
    assert [(d.id, d.status, d.attempts, d.last_attempt_at) for d in state.webhook_deliveries] == [
        ("msg_a", "delivered", 2, at(6)), ("msg_b", "failed", 1, at(5))]
    # A success is never undone by a late record of an earlier try.
    late = apply(state, attempt(7, "msg_a", 1, "failed"), 7)
    assert late.webhook_deliveries == state.webhook_deliveries and late.last_seq == 7


@pure
@given(st.lists(st.tuples(st.sampled_from(["msg_a", "msg_b", "msg_c"]), st.integers(1, 50),
                          st.sampled_from(["delivered", "retrying", "failed"])), max_size=20))
def test_each_delivery_once_in_first_seen_order_with_its_most_attempts(records):
    state = new_state(submitted(), 1)
    for seq, (delivery, n, outcome) in enumerate(records, start=2):
        state = apply(state, attempt(seq, delivery, n, outcome), seq)
    assert [d.id for d in state.webhook_deliveries] == list(dict.fromkeys(r[0] for r in records))
    for d in state.webhook_deliveries:
        mine = [r for r in records if r[0] == d.id]
        delivered_at = next((i for i, r in enumerate(mine) if r[2] == "delivered"), None)
        upto = mine if delivered_at is None else mine[: delivered_at + 1]
        assert d.status == upto[-1][2]
        assert d.attempts == max(r[1] for r in upto)

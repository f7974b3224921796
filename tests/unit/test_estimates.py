"""When a queued job should start (a running job's finish is tests/unit/test_pace.py)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from mochi_api.estimates import estimated_start

from .events import T0, pure


def test_no_estimate_without_a_position_or_a_pace():
    assert estimated_start(None, 10.0, 1, T0) is None
    assert estimated_start(3, None, 1, T0) is None


def test_queue_estimate_shares_the_jobs_ahead_over_the_runners():
    assert estimated_start(1, 10.0, 0, T0) == T0  # first in line, nothing running: now
    assert estimated_start(1, 10.0, 1, T0) == T0 + timedelta(seconds=5)  # a busy runner is half done
    assert estimated_start(5, 10.0, 2, T0) == T0 + timedelta(seconds=(4 / 2 + 0.5) * 10)


@pure
@given(st.integers(1, 10_000), st.floats(0.1, 3600), st.integers(0, 64))
def test_a_later_place_in_line_never_starts_earlier(position, mean_s, runners):
    here = estimated_start(position, mean_s, runners, T0)
    behind = estimated_start(position + 1, mean_s, runners, T0)
    assert here is not None and behind is not None and T0 <= here <= behind

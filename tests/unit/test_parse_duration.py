"""Cancel-After durations: Go-style ("90s", "5m", "1h30m", "250ms") or bare seconds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mochi_api.submission import parse_duration

from .events import pure

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1.5h", 5400.0), ("2h0m3s", 7203.0),
    ("42", 42.0), ("0.5", 0.5), ("  10s ", 10.0), ("0s", 0.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", " ", "s", "abc", "5x", "-5s", "+5s", "1h 30m", "5 s", "1e3", "1,5s",
                                  "٥s", "5S", "inf", "nan", ".5s", "5.s", "10ss"])
def test_not_durations(text):
    assert parse_duration(text) is None


@pure
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNITS))), min_size=1, max_size=6))
def test_parts_add_up(parts):
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert parse_duration(text) == pytest.approx(sum(n * UNITS[unit] for n, unit in parts))


@pure
@given(st.text(max_size=40))
def test_any_text_is_a_non_negative_duration_or_none(text):
    seconds = parse_duration(text)
    assert seconds is None or seconds >= 0

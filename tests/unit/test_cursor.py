"""The list cursor: base64 of a stream sequence, decoded strictly (only the
spelling the API hands out, within the catalog's signed 64-bit range)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.plugins.problem_details import ProblemDetailsException

from mochi_api.routes.jobs import _decode_cursor, _encode_cursor

from .events import pure

INT64_MAX = 2**63 - 1


def refused(cursor: str) -> bool:
    try:
        _decode_cursor(cursor)
    except ProblemDetailsException as err:
        assert err.status_code == 422
        assert err.extra == {"errors": [{"field": "cursor", "message": "not a cursor this API handed out"}]}
        return True
    return False


@pure
@given(st.integers(1, INT64_MAX))
def test_round_trip(seq):
    cursor = _encode_cursor(seq)
    assert cursor.isascii() and "=" not in cursor and len(cursor) <= 28
    assert _decode_cursor(cursor) == seq


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "", "=", "!!!!", _b64(b"s"), _b64(b"s0"), _b64(b"x12"), _b64(b"s-1"), _b64(b"s 1"), _b64(b"s01"),
    _b64(f"s{2**63}".encode()), _b64(b"s" + b"9" * 5000), _b64("s١٢".encode()), _b64(b"s12") + "=",
    _b64(b"s12") + "\n", "czEy\u00e9", "c" * 10_000])
def test_refused(cursor):
    assert refused(cursor)


@pure
@given(st.text(max_size=80))
def test_any_text_is_refused_or_exactly_a_cursor_handed_out(text):
    if not refused(text):
        assert _encode_cursor(_decode_cursor(text)) == text

"""How much of a client's input the API reads: integers spelled in headers,
queries and cursors, and the length of every header and query string it looks at.

Python's `int()` and `str.isdigit()` accept other scripts' digits ("١٢" is 12)
and `int()` raises past 4300 digits, so numbers from a client go through
`ascii_int` instead: ASCII digits only, at most 19 of them, within range."""

from __future__ import annotations

# The catalog's SQLite columns (stream sequences) are signed 64-bit.
INT64_MAX = 2**63 - 1
_MAX_DIGITS = len(str(INT64_MAX))

# Longest header value the API parses; keys are 47 characters (`mochi keys new`).
MAX_AUTHORIZATION_CHARS = 512
MAX_TOKEN_CHARS = 256
MAX_RANGE_CHARS = 128
MAX_IDEMPOTENCY_KEY_CHARS = 255
MAX_CANCEL_AFTER_CHARS = 32
# All of a request's header lines together (a browser's cookies for localhost included).
MAX_HEADER_BYTES = 32 * 1024
# A cursor is base64 of "s<seq>": 28 characters at most; room to spare.
MAX_CURSOR_CHARS = 64
MAX_STATUS_VALUES = 16


def ascii_int(text: str, maximum: int = INT64_MAX) -> int | None:
    """The non-negative integer `text` spells in ASCII digits, or None when it
    is empty, has anything else in it, or is above `maximum`."""
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= maximum else None

"""Stream a stored video with HTTP Range support.

Litestar's File response ignores Range (2.x), and browsers seek in a <video>
with Range requests, so the single-range case is handled here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from litestar import Request
from litestar.response import Response, Stream
from litestar.response.base import ASGIResponse

from mochi_api.bounds import INT64_MAX, ascii_int
from mochi_api.problems import problem
from mochi_contracts.storage import VIDEO_CONTENT_TYPE

# ASCII digits only: `\d` would take other scripts' digits, which int() then reads.
_RANGE = re.compile(r"([0-9]*)-([0-9]*)")
CHUNK = 256 * 1024
UNSATISFIABLE = "unsatisfiable"


def _position(digits: str) -> int:
    # A position of more digits than any int64 is past every file; reading it
    # with int() would cost time and, past 4300 digits, raise.
    value = ascii_int(digits)
    return INT64_MAX if value is None else value


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end) inclusive; None to send everything; UNSATISFIABLE for a 416.

    As RFC 9110 (14.2) allows: another unit or several ranges are ignored (the
    whole file is sent); a `bytes=` range that is not one well-formed range is
    rejected like one that lies past the end."""
    if not header:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.fullmatch(spec.strip())
    if match is None:
        return UNSATISFIABLE
    first, last = match.groups()
    if not first and not last:
        return UNSATISFIABLE
    if not first:  # the last N bytes
        length = _position(last)
        if length == 0 or size == 0:
            return UNSATISFIABLE
        return max(size - length, 0), size - 1
    start = _position(first)
    end = min(_position(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return UNSATISFIABLE
    return start, end


async def _read(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            chunk = await f.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


class _FileStream(Stream):
    """A Stream that sends no body to a HEAD (routes answer HEAD through
    mochi_api.head). Litestar leaves `is_head_response` to whoever turns the
    response into ASGI, and its route handlers never set it: the file would be
    read through only for uvicorn to drop every byte."""

    def to_asgi_response(self, app: Any, request: Request, **kwargs: Any) -> ASGIResponse:
        return super().to_asgi_response(app, request, **{**kwargs, "is_head_response": request.method == "HEAD"})


def video_response(path: Path, range_header: str | None, filename: str,
                   media_type: str = VIDEO_CONTENT_TYPE) -> Response | Stream:
    size = path.stat().st_size
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'inline; filename="{filename}"'}
    wanted = parse_range(range_header, size)
    if isinstance(wanted, str):  # UNSATISFIABLE is the only text parse_range returns
        exc = problem(416, "range-not-satisfiable", "Range not satisfiable",
                      f"the Range header names no byte range of this {size}-byte video; "
                      "send one range, bytes=<first>-[<last>] or bytes=-<suffix length>")
        exc.headers = {**headers, "Content-Range": f"bytes */{size}"}
        raise exc
    start, end = (0, size - 1) if wanted is None else wanted
    headers["Content-Length"] = str(end - start + 1)
    # Named here, not left to Litestar, which names no type on a response without a body (HEAD).
    headers["Content-Type"] = media_type
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return _FileStream(_read(path, start, end), status_code=status, media_type=media_type, headers=headers)

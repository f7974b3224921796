"""Stream a stored video with HTTP Range support.

Litestar's File response ignores Range (2.x), and browsers seek in a <video>
with Range requests, so the single-range case is handled here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from litestar.response import Response, Stream

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 256 * 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end) inclusive; None to send everything; 'unsatisfiable' for a 416."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # multi-range or another unit: RFC 9110 lets us send the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return "unsatisfiable"
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


def video_response(path: Path, range_header: str | None, filename: str) -> Response | Stream:
    size = path.stat().st_size
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'inline; filename="{filename}"'}
    wanted = parse_range(range_header, size)
    if wanted == "unsatisfiable":
        return Response(content=b"", status_code=416,
                        headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = (0, size - 1) if wanted is None else wanted
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Stream(_read(path, start, end), status_code=status, media_type="video/mp4", headers=headers)

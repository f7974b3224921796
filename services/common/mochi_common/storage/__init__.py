"""Video stores behind one small interface; the key of a job's video comes from
`mochi_contracts.storage.video_key`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class VideoStore(Protocol):
    def size(self, key: str) -> int | None:
        """Bytes stored under `key`, or None if nothing is."""

    def put_new(self, key: str, path: Path, content_type: str) -> bool:
        """Store the file under `key` unless something is already there.
        True if this call stored it; False if the key was taken (never overwritten)."""

    def local_path(self, key: str) -> Path | None:
        """A file the API can stream with Range, for stores on this filesystem."""

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A URL the client downloads from directly, for remote stores."""


def open_store(url: str) -> VideoStore:
    """`file:///abs/dir` or `file://relative/dir` for a filesystem store."""
    if url.startswith("file://"):
        from mochi_common.storage.local import LocalVideoStore

        return LocalVideoStore(Path(url.removeprefix("file://")))
    raise ValueError(f"unsupported video store URL {url!r} (expected file://...)")

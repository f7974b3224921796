"""Videos on a local (or shared network) filesystem."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from mochi_contracts.storage import VIDEO_PREFIX, job_keys, job_of_key


class LocalVideoStore:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def put_new(self, key: str, path: Path, content_type: str) -> bool:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the destination, then hard-link: link() fails if the key
        # exists, so a second writer can never replace a stored video.
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".upload-")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.link(tmp, dest)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def fetch(self, key: str, dest: Path) -> bool:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            return False
        return True

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.exists() else None

    def presigned_url(self, key: str, expires_s: int, method: Literal["GET", "HEAD"] = "GET") -> str | None:
        return None

    def set_video_lifetime(self, lifetime_s: float) -> bool:
        return False  # a filesystem has no lifecycle rules: the API sweeps

    def sweep_expired(self, lifetime_s: float) -> int:
        cutoff = time.time() - lifetime_s
        removed = 0
        for path in list((self.root / VIDEO_PREFIX).glob("*/*")):
            if path.name.startswith("."):
                continue  # put_new's copy of an upload in progress
            try:
                expired = path.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue  # swept already, with its video or by another replica
            if not expired:
                continue
            # A job's files go together: its thumbnails are stored just after
            # its video, so they would otherwise outlive it by one sweep.
            job_id = job_of_key(path.relative_to(self.root).as_posix())
            for target in [self.root / key for key in job_keys(job_id)] if job_id else [path]:
                try:
                    target.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass  # never stored, or another replica swept it
        return removed

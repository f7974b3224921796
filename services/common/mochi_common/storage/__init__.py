"""Video stores behind one small interface; the keys of a job's video and its
thumbnails come from `mochi_contracts.storage` (video_key, thumbnail_key, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from mochi_common.settings import ServiceSettings


class TransientStoreError(Exception):
    """The store could not be reached or asked us to slow down; the same call
    may succeed later. Stores raise it (from the backend's error) so that
    callers can retry without knowing the backend's exception types."""


class VideoStore(Protocol):
    def size(self, key: str) -> int | None:
        """Bytes stored under `key`, or None if nothing is."""

    def put_new(self, key: str, path: Path, content_type: str) -> bool:
        """Store the file under `key` unless something is already there.
        True if this call stored it; False if the key was taken (never overwritten)."""

    def fetch(self, key: str, dest: Path) -> bool:
        """Copy what is stored under `key` into the file `dest`; False if nothing is."""

    def local_path(self, key: str) -> Path | None:
        """A file the API can stream with Range, for stores on this filesystem."""

    def set_video_lifetime(self, lifetime_s: float) -> bool:
        """Have the store itself expire videos (an S3 lifecycle rule); False
        where it cannot, and a sweep must."""

    def sweep_expired(self, lifetime_s: float) -> int:
        """Delete every file of each job that has a file stored more than
        lifetime_s ago (its video and thumbnails together, or whatever is left
        of them); return how many files were deleted."""

    def presigned_url(self, key: str, expires_s: int, method: Literal["GET", "HEAD"] = "GET") -> str | None:
        """A URL the client downloads from directly, for remote stores. S3
        signs the method too: a HEAD gets a URL of its own."""


class StoreSettings(ServiceSettings, kw_only=True, frozen=True):
    """Where videos live: the fields the API and the runner both read
    (MOCHI_STORE_URL, MOCHI_S3_*); each service's settings extend this."""

    store_url: str = "file://var/videos"
    # s3://<bucket> stores videos in S3 or MinIO (see README, "Video storage").
    # The endpoint is host:port (TLS from s3_secure) or http(s)://host:port.
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = True
    s3_region: str = "us-east-1"
    # Where clients download from, if not s3_endpoint (e.g. an Ingress in front
    # of an in-cluster MinIO); presigned URLs are signed for this host.
    s3_public_endpoint: str = ""


def open_store(url: str, settings: StoreSettings) -> VideoStore:
    """`file:///abs/dir` or `file://relative/dir` for a filesystem store;
    `s3://<bucket>` for an S3-compatible store (MinIO, AWS S3) configured by
    the s3_* settings."""
    if url.startswith("file://"):
        from mochi_common.storage.local import LocalVideoStore

        return LocalVideoStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from mochi_common.storage.s3 import S3VideoStore, s3_config

        bucket = url.removeprefix("s3://").rstrip("/")
        if not bucket or "/" in bucket:
            raise ValueError(f"bad video store URL {url!r} (expected s3://<bucket>)")
        store = S3VideoStore(s3_config(bucket, settings))
        store.try_ensure_bucket()
        return store
    raise ValueError(f"unsupported video store URL {url!r} (expected file://... or s3://<bucket>)")

"""Videos in an S3-compatible bucket: MinIO in the cluster, or AWS S3."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

import certifi
import structlog
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from mochi_common.storage import StoreSettings, TransientStoreError
from mochi_contracts.storage import VIDEO_PREFIX, job_keys, job_of_key

log = structlog.get_logger()

# One PutObject carries at most 5 GiB; a Mochi video is tens of MB, so a single
# conditional PUT is enough and multipart is not needed.
MAX_SINGLE_PUT = 5 * 1024**3

# Error codes that mean "not now" rather than "never": the same call may succeed later.
_TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException",
    "RequestTimeout", "OperationAborted", "XMinioServerNotInitialized",
    # Another conditional write to the same key is in flight; the retry then
    # either stores the video or learns that the other one did (412).
    "ConditionalRequestConflict",
})


@dataclass(frozen=True)
class Endpoint:
    host: str  # host[:port], as minio's client takes it
    secure: bool


def parse_endpoint(value: str, secure: bool) -> Endpoint:
    """`host:port` (TLS from s3_secure) or `http(s)://host:port` (TLS from the scheme)."""
    if "://" not in value:
        return Endpoint(value.rstrip("/"), secure)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise ValueError(f"bad S3 endpoint {value!r} (expected host:port or http(s)://host:port)")
    return Endpoint(parts.netloc, parts.scheme == "https")


@dataclass(frozen=True)
class S3Config:
    bucket: str
    endpoint: Endpoint  # where the services reach the store
    public_endpoint: Endpoint  # where clients download from; presigned URLs name this host
    access_key: str
    secret_key: str
    region: str


def s3_config(bucket: str, settings: StoreSettings) -> S3Config:
    if not settings.s3_endpoint:
        raise ValueError("an s3:// video store needs MOCHI_S3_ENDPOINT")
    endpoint = parse_endpoint(settings.s3_endpoint, settings.s3_secure)
    public = (parse_endpoint(settings.s3_public_endpoint, settings.s3_secure)
              if settings.s3_public_endpoint else endpoint)
    return S3Config(bucket=bucket, endpoint=endpoint, public_endpoint=public,
                    access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                    # An explicit region keeps presigning local: without one, minio
                    # asks the (possibly unreachable) endpoint for the bucket's region.
                    region=settings.s3_region or "us-east-1")


def _transient_status(status: int) -> bool:
    return status in (408, 429) or (status >= 500 and status != 501)


def is_transient(err: BaseException) -> bool:
    """Connection trouble, 5xx and throttling: worth another try later."""
    if isinstance(err, S3Error):
        return err.code in _TRANSIENT_CODES or _transient_status(err.response.status)
    if isinstance(err, ServerError):
        return _transient_status(err.status_code)
    if isinstance(err, InvalidResponseError):
        # A non-XML answer, e.g. a load balancer's 502 page in front of the store;
        # minio keeps its status only in a private field.
        return _transient_status(int(getattr(err, "_code", 0) or 0))
    if isinstance(err, urllib3.exceptions.MaxRetryError):
        return err.reason is None or is_transient(err.reason)
    if isinstance(err, urllib3.exceptions.SSLError):
        return False  # a certificate problem does not heal by waiting
    if isinstance(err, (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError,
                        urllib3.exceptions.NewConnectionError, urllib3.exceptions.ResponseError)):
        return True
    return isinstance(err, (ConnectionError, TimeoutError))


@contextmanager
def _transient_as_store_error(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as err:
        if is_transient(err):
            raise TransientStoreError(f"{what}: {type(err).__name__}: {err}") from err
        raise


def _http_client() -> urllib3.PoolManager:
    # No retries inside urllib3 (minio's default client retries 5 times): the
    # runner retries whole calls with its own backoff and logs each one, and
    # two layers of retries would multiply the waits. A short connect timeout
    # keeps a start-up with the store down from hanging.
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5.0, read=120.0), maxsize=10,
        cert_reqs="CERT_REQUIRED", ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=0, redirect=0))


class S3VideoStore:
    def __init__(self, config: S3Config):
        self.config = config
        self.bucket = config.bucket
        access, secret = config.access_key or None, config.secret_key or None
        self._client = Minio(config.endpoint.host, access_key=access, secret_key=secret,
                             secure=config.endpoint.secure, region=config.region,
                             http_client=_http_client())
        # A presigned URL is signed for the host the client connects to, so it
        # is signed by a client for the public endpoint. Signing is local (the
        # region is set), so this client never needs to reach that host.
        self._signer = Minio(config.public_endpoint.host, access_key=access, secret_key=secret,
                             secure=config.public_endpoint.secure, region=config.region)
        # minio-py's put_object turns every header it does not know into
        # x-amz-meta-*, so If-None-Match can only go through its single-PUT call.
        # Fail at start, not at the first upload, on a client without it.
        if not callable(getattr(self._client, "_put_object", None)):
            raise RuntimeError("this minio client has no _put_object; use minio>=7.2,<8")
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing; safe when several services race to."""
        with self._bucket_lock:
            if self._bucket_ready:
                return
            with _transient_as_store_error(f"create bucket {self.bucket}"):
                if not self._client.bucket_exists(self.bucket):
                    try:
                        self._client.make_bucket(self.bucket)
                        log.info("store.bucket_created", bucket=self.bucket)
                    except S3Error as err:
                        if err.code != "BucketAlreadyOwnedByYou":
                            raise
            self._bucket_ready = True

    def try_ensure_bucket(self) -> bool:
        """At start: create the bucket, or carry on if the store is not up yet
        (pods start in any order); put_new creates it on first use then."""
        try:
            self.ensure_bucket()
            return True
        except TransientStoreError as err:
            log.warning("store.not_reachable_at_start", bucket=self.bucket,
                        endpoint=self.config.endpoint.host, error=str(err))
            return False

    def size(self, key: str) -> int | None:
        try:
            with _transient_as_store_error(f"stat {key}"):
                stat = self._client.stat_object(self.bucket, key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchBucket"):
                return None
            raise
        return stat.size or 0

    def put_new(self, key: str, path: Path, content_type: str) -> bool:
        self.ensure_bucket()
        data = path.read_bytes()
        if len(data) > MAX_SINGLE_PUT:
            raise ValueError(f"{path} is {len(data)} bytes, over one PUT's {MAX_SINGLE_PUT}")
        headers: dict[str, str | list[str] | tuple[str]] = {
            "Content-Type": content_type,
            # The store refuses (412) if the key exists, atomically, so two
            # runners finishing the same job never replace each other's video.
            # AWS S3 and MinIO honour it; a stat-then-put would leave a race.
            "If-None-Match": "*",
        }
        try:
            with _transient_as_store_error(f"put {key}"):
                self._client._put_object(self.bucket, key, data, headers=headers)
        except S3Error as err:
            if err.code == "PreconditionFailed":
                return False
            if err.code == "NoSuchBucket":
                # Deleted behind our back (or a store that lost its data): make it
                # again on the caller's next try rather than fail every job.
                self._bucket_ready = False
                raise TransientStoreError(f"put {key}: bucket {self.bucket} is missing") from err
            raise
        return True

    def fetch(self, key: str, dest: Path) -> bool:
        try:
            with _transient_as_store_error(f"get {key}"):
                self._client.fget_object(self.bucket, key, str(dest))
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchBucket"):
                return False
            raise
        return True

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(self, key: str, expires_s: int, method: Literal["GET", "HEAD"] = "GET") -> str | None:
        name = PurePosixPath(key).name
        return self._signer.get_presigned_url(
            method, self.bucket, key, expires=timedelta(seconds=expires_s),
            # Same disposition as the local store's streamed answer.
            response_headers={"response-content-disposition": f'inline; filename="{name}"'})

    # ---- retention -------------------------------------------------------

    def set_video_lifetime(self, lifetime_s: float) -> bool:
        """An expiration rule on videos/ (S3 counts whole days); False if the
        lifetime is shorter than a day, which only a sweep can keep."""
        from minio.commonconfig import ENABLED, Filter
        from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

        if lifetime_s < 86400:
            return False
        self.ensure_bucket()
        rule = Rule(ENABLED, rule_filter=Filter(prefix=VIDEO_PREFIX), rule_id="mochi-video-lifetime",
                    expiration=Expiration(days=math.ceil(lifetime_s / 86400)))
        self._client.set_bucket_lifecycle(self.bucket, LifecycleConfig([rule]))
        return True

    def sweep_expired(self, lifetime_s: float) -> int:
        from minio.deleteobjects import DeleteObject

        cutoff = datetime.now(UTC) - timedelta(seconds=lifetime_s)
        listed = {obj.object_name: obj.last_modified
                  for obj in self._client.list_objects(self.bucket, prefix=VIDEO_PREFIX, recursive=True)
                  if obj.object_name}
        doomed: set[str] = set()
        for name, modified in listed.items():
            if modified is not None and modified < cutoff:
                # A job's files go together (see LocalVideoStore.sweep_expired).
                job_id = job_of_key(name)
                doomed.update(key for key in (job_keys(job_id) if job_id else (name,)) if key in listed)
        if not doomed:
            return 0
        # One DeleteObjects request per 1000 keys rather than a request per file.
        errors = list(self._client.remove_objects(self.bucket, [DeleteObject(key) for key in sorted(doomed)]))
        if errors:
            raise RuntimeError(f"{len(errors)} of {len(doomed)} expired files not deleted, first: {errors[0]}")
        return len(doomed)

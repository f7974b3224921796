"""The S3 video store against a real S3-protocol server on loopback (moto in
server mode, a separate process), alone and under the whole stack."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import httpx
import msgspec
import pytest
from minio import Minio

from conftest import SMALL, System
from mochi_api.settings import ApiSettings
from mochi_cli.client import MochiClient
from mochi_cli.processes import Proc, free_port, spawn, wait_for_port
from mochi_common.storage import StoreSettings, TransientStoreError, open_store
from mochi_common.storage.retry import RetryPolicy, call_with_retries
from mochi_common.storage.s3 import S3VideoStore
from mochi_contracts.storage import VIDEO_CONTENT_TYPE, video_key
from mochi_runner.settings import RunnerSettings
from tcp_proxy import TcpProxy
from waits import wait_until

pytest.importorskip("moto.server", reason="needs moto's server mode: pip install 'moto[server]'")

BUCKET = "mochi-videos"
KEYS = {"s3_access_key": "mochi-test", "s3_secret_key": "mochi-test-secret"}


def start_s3(port: int, logs: Path) -> Proc:
    proc = spawn(f"s3-{port}", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                 {}, logs)
    wait_for_port(port, timeout=60, proc=proc.popen)
    return proc


def store_settings(port: int, public: str = "") -> ApiSettings:
    return ApiSettings(s3_endpoint=f"127.0.0.1:{port}", s3_secure=False, s3_public_endpoint=public, **KEYS)


def stack_env(internal_port: int, public_port: int, **extra: str) -> dict[str, str]:
    return {"MOCHI_STORE_URL": f"s3://{BUCKET}", "MOCHI_S3_ENDPOINT": f"127.0.0.1:{internal_port}",
            "MOCHI_S3_SECURE": "false", "MOCHI_S3_ACCESS_KEY": KEYS["s3_access_key"],
            "MOCHI_S3_SECRET_KEY": KEYS["s3_secret_key"],
            # Another host name than the services use, as an Ingress would be.
            "MOCHI_S3_PUBLIC_ENDPOINT": f"http://localhost:{public_port}",
            "MOCHI_STORE_RETRY_FIRST_DELAY_S": "0.2", "MOCHI_STORE_RETRY_MAX_DELAY_S": "1",
            **extra}


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = start_s3(port, tmp_path / "logs")
    yield port
    proc.stop()


def minio_client(port: int) -> Minio:
    return Minio(f"127.0.0.1:{port}", secure=False, access_key=KEYS["s3_access_key"],
                 secret_key=KEYS["s3_secret_key"], region="us-east-1")


def decode_mp4(data: bytes) -> tuple[int, int, int, str]:
    with av.open(io.BytesIO(data)) as box:
        stream = box.streams.video[0]
        frames = sum(1 for _ in box.decode(video=0))
        return frames, stream.width, stream.height, stream.codec_context.name


# --- the store alone -------------------------------------------------------------------------


def test_both_services_carry_the_same_store_settings() -> None:
    def s3_fields(cls: type[msgspec.Struct]) -> dict[str, object]:
        return {f.name: f.default for f in msgspec.structs.fields(cls) if f.name.startswith("s3_")}

    assert s3_fields(ApiSettings) == s3_fields(RunnerSettings)
    assert set(s3_fields(ApiSettings)) == {n for n in dir(StoreSettings) if n.startswith("s3_")}


def test_bucket_is_created_if_missing(s3: int) -> None:
    client = minio_client(s3)
    assert not client.bucket_exists(BUCKET)
    open_store(f"s3://{BUCKET}", store_settings(s3))
    assert client.bucket_exists(BUCKET)
    open_store(f"s3://{BUCKET}", store_settings(s3))  # a second service finds it there


def test_put_new_stores_once_and_never_overwrites(s3: int, tmp_path: Path) -> None:
    store = open_store(f"s3://{BUCKET}", store_settings(s3))
    key = video_key("ab" + "0" * 30)
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(b"first video " * 1000)
    second.write_bytes(b"second")
    assert store.size(key) is None
    assert store.put_new(key, first, VIDEO_CONTENT_TYPE) is True
    assert store.put_new(key, second, VIDEO_CONTENT_TYPE) is False
    assert store.size(key) == first.stat().st_size
    stat = minio_client(s3).stat_object(BUCKET, key)
    assert stat.content_type == VIDEO_CONTENT_TYPE and stat.size == first.stat().st_size
    assert minio_client(s3).get_object(BUCKET, key).read() == first.read_bytes()
    assert store.local_path(key) is None


def test_presigned_url_names_the_public_endpoint_and_downloads(s3: int, tmp_path: Path) -> None:
    public = f"http://localhost:{s3}"
    store = open_store(f"s3://{BUCKET}", store_settings(s3, public=public))
    key = video_key("cd" + "1" * 30)
    video = tmp_path / "v.mp4"
    video.write_bytes(bytes(range(256)) * 64)
    store.put_new(key, video, VIDEO_CONTENT_TYPE)
    url = store.presigned_url(key, 120)
    assert url is not None and url.startswith(f"{public}/{BUCKET}/{key}?")
    assert "X-Amz-Expires=120" in url
    got = httpx.get(url)
    assert got.status_code == 200 and got.content == video.read_bytes()
    assert got.headers["content-type"] == VIDEO_CONTENT_TYPE
    # S3 and MinIO sign the method (SigV4's canonical request begins with it),
    # so a HEAD needs a URL of its own; moto does not check signatures, so
    # what shows it here is that the signature differs, and HEAD's headers.
    head_url = store.presigned_url(key, 120, "HEAD") or ""
    assert parse_qs(urlsplit(head_url).query)["X-Amz-Signature"] != parse_qs(urlsplit(url).query)["X-Amz-Signature"]
    head = httpx.head(head_url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(video.read_bytes()))
    assert head.headers["content-type"] == VIDEO_CONTENT_TYPE


def test_store_down_is_transient_and_the_bucket_comes_later(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    store = open_store(f"s3://{BUCKET}", store_settings(port))  # starts anyway
    assert isinstance(store, S3VideoStore)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 100)
    key = video_key("ef" + "2" * 30)
    with pytest.raises(TransientStoreError):
        store.size(key)
    with pytest.raises(TransientStoreError):
        store.put_new(key, video, VIDEO_CONTENT_TYPE)
    proc = start_s3(port, tmp_path / "logs")
    try:
        assert store.put_new(key, video, VIDEO_CONTENT_TYPE) is True  # makes the bucket first
        assert store.size(key) == 100
    finally:
        proc.stop()


def test_open_store_rejects_bad_urls() -> None:
    with pytest.raises(ValueError, match="MOCHI_S3_ENDPOINT"):
        open_store("s3://bucket", ApiSettings())
    with pytest.raises(ValueError, match="s3://<bucket>"):
        open_store("s3://bucket/prefix", store_settings(1))


def test_retries_are_bounded_and_only_for_transient_errors() -> None:
    calls: list[int] = []

    def down() -> int:
        calls.append(1)
        raise TransientStoreError("connection refused")

    policy = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.02)
    with pytest.raises(TransientStoreError):
        asyncio.run(call_with_retries(down, policy, "size"))
    assert len(calls) == 3

    def refused() -> int:
        calls.append(1)
        raise PermissionError("access denied")

    calls.clear()
    with pytest.raises(PermissionError):
        asyncio.run(call_with_retries(refused, policy, "size"))
    assert len(calls) == 1

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise TransientStoreError("503 SlowDown")
        return 42

    calls.clear()
    assert asyncio.run(call_with_retries(flaky, policy, "size")) == 42


# --- the whole stack -------------------------------------------------------------------------


def job_events(system: System, job_id: str) -> list[str]:
    return [m.type for m in system.events(f"mochi.jobs.{job_id}.>")]


def check_download(system: System, job_id: str, public_port: int) -> None:
    client = system.client()
    answer = client.http.get(f"/v1/jobs/{job_id}/video")
    assert answer.status_code == 307, answer.text
    url = answer.headers["location"]
    assert url.startswith(f"http://localhost:{public_port}/{BUCKET}/{video_key(job_id)}?")
    assert "X-Amz-Expires=600" in url  # MOCHI_VIDEO_URL_EXPIRY_S
    video = httpx.get(url)  # no credentials: the signature is the permission
    assert video.status_code == 200 and video.headers["content-type"] == VIDEO_CONTENT_TYPE
    job = client.get(job_id)
    asked = job.request
    assert decode_mp4(video.content) == (asked.num_frames, asked.width, asked.height, "h264")
    assert job.video.size_bytes == len(video.content)
    # HEAD goes the same way, to a URL signed for HEAD.
    head = client.http.head(f"/v1/jobs/{job_id}/video")
    assert head.status_code == 307, head.text
    signed = httpx.head(head.headers["location"])
    assert signed.status_code == 200 and signed.headers["content-length"] == str(len(video.content))


def test_job_video_is_a_presigned_s3_download(system: System, s3: int) -> None:
    system.settings.update(stack_env(s3, s3, MOCHI_VIDEO_URL_EXPIRY_S="600"))
    system.start_catalog()
    system.start_runner()
    system.start_api()
    client = system.client()
    job = client.submit("a cat walks on the grass", **SMALL)
    done = client.wait(job.id, timeout=120)
    assert done.status == "completed", done
    assert minio_client(s3).stat_object(BUCKET, video_key(job.id)).size == done.video.size_bytes
    check_download(system, job.id, s3)


def runner_retries(runner: Proc, op: str) -> list[dict]:
    lines = [json.loads(line) for line in runner.log().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == "store.retry" and e.get("op") == op]


def test_runner_waits_for_a_store_that_starts_late(system: System) -> None:
    port = free_port()  # the store is down when the services start
    system.settings.update(stack_env(port, port, MOCHI_VIDEO_URL_EXPIRY_S="600",
                                     MOCHI_STORE_RETRY_ATTEMPTS="60"))
    system.start_catalog()
    runner = system.start_runner(wait=True)
    system.start_api()
    client = system.client()
    job = client.submit("a dog runs on the beach", **SMALL)
    # The job renders without the store and then retries its upload until the store is there.
    wait_until(lambda: runner_retries(runner, "put_new"), timeout=60, what="a retried upload")
    system.procs.append(start_s3(port, system.logs))
    done = client.wait(job.id, timeout=120)
    assert done.status == "completed", done
    assert job_events(system, job.id).count("completed") == 1
    assert "failed" not in job_events(system, job.id)
    assert job_events(system, job.id).count("started") == 1  # one delivery did it all
    check_download(system, job.id, port)


def start_behind_store_proxy(system: System, s3: int) -> tuple[TcpProxy, Proc, MochiClient]:
    """Catalog, runner and API reaching the store through a proxy the test can
    cut (clients download directly), with upload retries for a minute."""
    proxy = TcpProxy(s3)
    proxy.up()
    system.settings.update(stack_env(proxy.port, s3, MOCHI_VIDEO_URL_EXPIRY_S="600",
                                     MOCHI_STORE_RETRY_ATTEMPTS="60"))
    system.start_catalog()
    runner = system.start_runner(wait=True)
    system.start_api()
    return proxy, runner, system.client()


def test_upload_rides_out_an_outage(system: System, s3: int) -> None:
    """The store vanishes while the job renders and comes back while the runner
    retries the upload: one completed event, one stored video, no new delivery."""
    proxy, runner, client = start_behind_store_proxy(system, s3)
    # Enough steps that the render outlasts the moment it takes to cut the store.
    job = client.submit("a boat sails at dawn", width=128, height=128, num_frames=7, num_inference_steps=150)
    wait_until(lambda: client.get(job.id).status == "running", timeout=60, every=0.02,
               what="the job to start")
    proxy.down()
    try:
        wait_until(lambda: runner_retries(runner, "put_new"), timeout=120, what="a retried upload")
        assert client.get(job.id).status == "running"
    finally:
        proxy.up()
    done = client.wait(job.id, timeout=120)
    assert done.status == "completed", done
    types = job_events(system, job.id)
    assert types.count("completed") == 1 and types.count("started") == 1 and "failed" not in types
    # The job's own log tells of the retried upload.
    assert any("store put_new failed" in line.message and line.level == "warning"
               for line in client.logs(job.id))
    check_download(system, job.id, s3)


def test_video_lifetime_is_a_lifecycle_rule_or_a_sweep(s3: int, tmp_path: Path) -> None:
    store = open_store(f"s3://{BUCKET}", store_settings(s3))
    assert isinstance(store, S3VideoStore)
    # Whole days go into a lifecycle rule on videos/, which the store enforces itself.
    assert store.set_video_lifetime(1.5 * 86400) is True
    rules = minio_client(s3).get_bucket_lifecycle(BUCKET).rules
    assert [(r.rule_filter.prefix, r.expiration.days) for r in rules] == [("videos/", 2)]
    # Shorter than a day: the API sweeps instead.
    assert store.set_video_lifetime(60) is False
    key = video_key("ef" + "2" * 30)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 1000)
    store.put_new(key, video, VIDEO_CONTENT_TYPE)
    assert store.sweep_expired(3600) == 0 and store.size(key) == 1000
    wait_until(lambda: store.sweep_expired(0.5) == 1, timeout=10, what="an expired video swept")
    assert store.size(key) is None

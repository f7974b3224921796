"""Thumbnails (issue 24): each completed job's poster (JPEG) and short muted clip
(MP4) beside its video, made by the runner, served with the video's owner
rules, expired and swept with the video; in the filesystem and the S3 store."""

from __future__ import annotations

import asyncio
import io
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from conftest import SMALL, System
from mochi_api.api_keys import new_key
from mochi_cli.processes import free_port
from mochi_common.storage import VideoStore, open_store
from mochi_common.storage.local import LocalVideoStore
from mochi_common.storage.retry import RetryPolicy
from mochi_contracts.storage import (THUMBNAIL_CLIP_CONTENT_TYPE, THUMBNAIL_CONTENT_TYPE, VIDEO_CONTENT_TYPE,
                                     job_keys, job_of_key, thumbnail_clip_key, thumbnail_key, video_key)
from mochi_runner import metrics
from mochi_runner.thumbnails import store_missing_thumbnails, store_thumbnails
from mochi_runner.video_encode import encode_mp4
from test_s3_store import BUCKET, minio_client, stack_env, start_s3, store_settings
from waits import wait_until

QUICK = RetryPolicy(attempts=2, first_delay_s=0.01, max_delay_s=0.02)
ALICE, ALICE_LINE = new_key("alice")
BOB, BOB_LINE = new_key("bob")
log = structlog.get_logger()


@pytest.fixture
def s3(tmp_path: Path):
    port = free_port()
    proc = start_s3(port, tmp_path / "logs")
    yield port
    proc.stop()


def frames(count: int, height: int, width: int) -> np.ndarray:
    """A moving gradient (noise would make every encoder's output as large as it can be)."""
    t = np.arange(count)[:, None, None]
    y, x = np.mgrid[0:height, 0:width]
    r = (x[None] + 4 * t) % 256
    g = np.broadcast_to((y[None] * 255 // max(height - 1, 1)), (count, height, width))
    b = (r // 2 + t * 3) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def check_poster(data: bytes, max_width: int, aspect: float) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes the whole JPEG, not only its header
    assert image.format == "JPEG" and image.mode == "RGB"
    assert 0 < image.width <= max_width
    assert abs(image.width / image.height - aspect) < 0.05
    return image


def check_clip(data: bytes, max_width: int, max_seconds: float) -> tuple[int, int, int]:
    with av.open(io.BytesIO(data)) as box:
        assert not box.streams.audio, "the clip is muted: no audio stream at all"
        stream = box.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = sum(1 for _ in box.decode(stream))
        seconds = float(box.duration) / av.time_base
        assert 0 < seconds <= max_seconds + 0.05, seconds
        assert 0 < stream.width <= max_width
        return decoded, stream.width, stream.height


def stored_bytes(store: VideoStore, key: str, tmp: Path) -> bytes:
    dest = tmp / key.replace("/", "_")
    assert store.fetch(key, dest), key
    return dest.read_bytes()


def outcome_count(outcome: str) -> float:
    return metrics.THUMBNAILS.labels(outcome=outcome)._value.get()


# --- the runner's half alone: frames in, files in a store ----------------------------------


def test_thumbnails_of_a_reference_size_video(tmp_path: Path) -> None:
    store = LocalVideoStore(tmp_path / "store")
    job_id = "ab" + "1" * 30
    video = frames(163, 480, 848)  # Mochi's reference size and length at 30 fps: 5.4 s
    before = outcome_count("stored")
    got = asyncio.run(store_thumbnails(store, job_id, video, 30, retry=QUICK, log=log))
    assert got is not None and got.fresh
    assert outcome_count("stored") == before + 1
    poster = check_poster(stored_bytes(store, thumbnail_key(job_id), tmp_path), 480, 848 / 480)
    assert poster.width == 480
    # The poster is the frame a third into the clip (54 of 163), not the first one.
    third = np.asarray(Image.fromarray(video[54]).resize(poster.size), dtype=float)
    first = np.asarray(Image.fromarray(video[0]).resize(poster.size), dtype=float)
    mine = np.asarray(poster, dtype=float)
    assert np.abs(mine - third).mean() < np.abs(mine - first).mean() / 2
    clip = stored_bytes(store, thumbnail_clip_key(job_id), tmp_path)
    assert check_clip(clip, 320, 3.0) == (90, 320, 180)  # 3 s of 30 fps, 848x480 scaled to 320 wide
    assert len(clip) < 400_000 // 8 * 3 * 1.2  # about the 400 kbit/s cap for 3 s
    assert got.poster_bytes == store.size(thumbnail_key(job_id)) and got.clip_bytes == len(clip)


def test_a_second_delivery_never_replaces_them_and_a_short_video_is_kept_whole(tmp_path: Path) -> None:
    store = LocalVideoStore(tmp_path / "store")
    job_id = "cd" + "2" * 30
    small = frames(7, 64, 64)
    assert asyncio.run(store_thumbnails(store, job_id, small, 24, retry=QUICK, log=log)).fresh
    first = stored_bytes(store, thumbnail_key(job_id), tmp_path)
    again = asyncio.run(store_thumbnails(store, job_id, frames(7, 64, 64)[::-1].copy(), 24, retry=QUICK, log=log))
    assert again is not None and not again.fresh
    assert stored_bytes(store, thumbnail_key(job_id), tmp_path) == first
    check_poster(first, 64, 1.0)
    # Shorter than 3 s: every frame, never enlarged past the video's 64 px.
    assert check_clip(stored_bytes(store, thumbnail_clip_key(job_id), tmp_path), 64, 7 / 24) == (7, 64, 64)


def test_a_store_that_stays_down_costs_a_warning_and_a_metric_not_an_exception(tmp_path: Path) -> None:
    store = open_store(f"s3://{BUCKET}", store_settings(free_port()))  # nothing listens there
    before = outcome_count("failed")
    with structlog.testing.capture_logs() as logs:
        got = asyncio.run(store_thumbnails(store, "ef" + "3" * 30, frames(7, 64, 64), 24, retry=QUICK, log=log))
        missing = asyncio.run(store_missing_thumbnails(store, "ef" + "3" * 30, retry=QUICK, log=log))
    assert got is None and missing is None
    assert outcome_count("failed") == before + 2
    failed = [e for e in logs if e["event"] == "job.thumbnails_failed"]
    assert len(failed) == 2 and all("TransientStoreError" in e["error"] for e in failed)
    assert [e["log_level"] for e in failed] == ["warning", "warning"]
    # Frames that are not a video fail the same way, never out of the call.
    assert asyncio.run(store_thumbnails(LocalVideoStore(tmp_path), "ef" + "3" * 30, np.zeros((3, 8), np.uint8),
                                        24, retry=QUICK, log=log)) is None


def test_missing_thumbnails_are_made_from_the_stored_video(tmp_path: Path) -> None:
    store = LocalVideoStore(tmp_path / "store")
    job_id = "0a" + "4" * 30
    mp4 = tmp_path / "v.mp4"
    encode_mp4(frames(25, 96, 160), 24, mp4)
    assert store.put_new(video_key(job_id), mp4, VIDEO_CONTENT_TYPE)
    got = asyncio.run(store_missing_thumbnails(store, job_id, retry=QUICK, log=log))
    assert got is not None and got.fresh
    check_poster(stored_bytes(store, thumbnail_key(job_id), tmp_path), 160, 160 / 96)
    assert check_clip(stored_bytes(store, thumbnail_clip_key(job_id), tmp_path), 160, 25 / 24) == (25, 160, 96)
    # Already there: nothing made, nothing stored again.
    before = outcome_count("already_stored")
    again = asyncio.run(store_missing_thumbnails(store, job_id, retry=QUICK, log=log))
    assert again is not None and not again.fresh and outcome_count("already_stored") == before + 1


# --- keys and sweeps ---------------------------------------------------------------------


def test_a_jobs_files_share_its_prefix_and_name_it() -> None:
    job_id = "9f" + "5" * 30
    assert job_keys(job_id) == (video_key(job_id), thumbnail_key(job_id), thumbnail_clip_key(job_id))
    assert len(set(job_keys(job_id))) == 3
    for key in job_keys(job_id):
        assert key.startswith(f"videos/9f/{job_id}.") and job_of_key(key) == job_id
    assert thumbnail_key(job_id).endswith(".jpg") and thumbnail_clip_key(job_id).endswith(".mp4")
    for stranger in ("videos/9f/other.txt", f"checkpoints/{job_id}.mp4", f"videos/9f/{job_id}", "videos/"):
        assert job_of_key(stranger) is None


@given(st.text("0123456789abcdef", min_size=32, max_size=32), st.text(min_size=0, max_size=60))
def test_every_jobs_keys_read_back_and_nothing_else_does(job_id: str, other: str) -> None:
    assert [job_of_key(key) for key in job_keys(job_id)] == [job_id] * 3
    found = job_of_key(other)
    assert found is None or other in job_keys(found)


def put_files(store: VideoStore, job_id: str, tmp: Path, which: tuple[str, ...]) -> None:
    src = tmp / "blob"
    src.write_bytes(b"x" * 100)
    for key in which:
        assert store.put_new(key, src, VIDEO_CONTENT_TYPE)


def sweep_case(store: VideoStore, tmp: Path, age: float) -> tuple[str, str, str]:
    """An old job with all three files, an old orphan (thumbnails only), then a
    new job after `age` seconds; returns their ids."""
    old, orphan, new = "a1" + "6" * 30, "b2" + "7" * 30, "c3" + "8" * 30
    put_files(store, old, tmp, job_keys(old))
    put_files(store, orphan, tmp, job_keys(orphan)[1:])
    time.sleep(age)
    put_files(store, new, tmp, job_keys(new))
    return old, orphan, new


def test_local_sweep_deletes_a_jobs_files_together_and_finds_orphans(tmp_path: Path) -> None:
    store = LocalVideoStore(tmp_path / "store")
    old, orphan, new = sweep_case(store, tmp_path, 0)
    # The old job's thumbnails are younger than its video (stored after it):
    # they still go with it.
    past = time.time() - 3600
    os.utime(store.root / video_key(old), (past, past))
    for key in job_keys(orphan)[1:]:
        os.utime(store.root / key, (past, past))
    assert store.sweep_expired(600) == 5
    assert [store.size(k) for k in job_keys(old) + job_keys(orphan)] == [None] * 6
    assert [store.size(k) for k in job_keys(new)] == [100] * 3
    assert store.sweep_expired(600) == 0


def test_s3_sweep_deletes_a_jobs_files_together_and_finds_orphans(s3: int, tmp_path: Path) -> None:
    store = open_store(f"s3://{BUCKET}", store_settings(s3))
    old, orphan, new = sweep_case(store, tmp_path, 3.0)
    assert store.sweep_expired(2.0) == 5
    assert [store.size(k) for k in job_keys(old) + job_keys(orphan)] == [None] * 6
    assert [store.size(k) for k in job_keys(new)] == [100] * 3


# --- the whole system --------------------------------------------------------------------


def as_(key: str, system: System) -> httpx.Client:
    return httpx.Client(base_url=system.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def wait_completed(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    def done() -> dict | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["final"] else None

    job = wait_until(done, timeout=timeout, every=0.2, what=f"job {job_id} to end")
    assert job["status"] == "completed", job
    return job


def assert_404(resp: httpx.Response) -> None:
    assert resp.status_code == 404, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_a_completed_jobs_thumbnails_are_its_owners_only(system: System) -> None:
    keys = system.root / "keys.txt"
    keys.write_text(f"{ALICE_LINE}\n{BOB_LINE}\n")
    system.start_catalog()
    system.start_api(MOCHI_API_KEYS_FILE=str(keys), MOCHI_ALLOW_ANONYMOUS="false")
    alice, bob = as_(ALICE, system), as_(BOB, system)
    request = {"prompt": "a cat walks on the grass", **SMALL, "width": 96, "height": 64, "num_frames": 13}
    job = alice.post("/v1/jobs", json=request).json()
    jid = job["id"]
    assert job["links"]["thumbnail"].endswith(f"/v1/jobs/{jid}/thumbnail")
    assert job["links"]["thumbnail_clip"].endswith(f"/v1/jobs/{jid}/thumbnail/clip")
    # Queued (no runner yet): nothing to show.
    for path in (f"/v1/jobs/{jid}/thumbnail", f"/v1/jobs/{jid}/thumbnail/clip"):
        assert_404(alice.get(path))
    system.start_runner()
    done = wait_completed(alice, jid)
    poster = alice.get(done["links"]["thumbnail"])
    assert poster.status_code == 200 and poster.headers["content-type"] == THUMBNAIL_CONTENT_TYPE
    assert poster.headers["cache-control"].startswith("private, max-age=")
    check_poster(poster.content, 96, 96 / 64)
    clip = alice.get(done["links"]["thumbnail_clip"])
    assert clip.status_code == 200 and clip.headers["content-type"] == THUMBNAIL_CLIP_CONTENT_TYPE
    assert check_clip(clip.content, 96, 13 / 30)[0] == 13
    # A <video> seeks with Range, as in the video itself.
    head = alice.get(done["links"]["thumbnail_clip"], headers={"Range": "bytes=0-99"})
    assert head.status_code == 206 and head.content == clip.content[:100]
    # Someone else's job does not exist for bob.
    for path in (f"/v1/jobs/{jid}/thumbnail", f"/v1/jobs/{jid}/thumbnail/clip"):
        assert_404(bob.get(path))
    assert_404(alice.get(f"/v1/jobs/{'0' * 32}/thumbnail"))
    # They lie beside the video in the store.
    videos = system.root / "videos"
    assert sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*") if p.is_file()) == sorted(
        job_keys(jid))


def test_thumbnails_expire_and_are_swept_with_the_video(system: System) -> None:
    system.settings.update({"MOCHI_VIDEO_LIFETIME_S": "6", "MOCHI_RETENTION_SWEEP_INTERVAL_S": "0.5"})
    system.start_catalog()
    system.start_runner()
    system.start_api()
    client = system.client()
    job = client.submit("a red car", **SMALL)
    done = client.wait(job.id, timeout=120, poll=0.1)
    assert done.status == "completed" and done.expires_at is not None
    videos = system.root / "videos"
    assert all((videos / key).is_file() for key in job_keys(job.id))
    if datetime.now(timezone.utc) < done.expires_at - timedelta(seconds=2):
        got = client.http.get(f"/v1/jobs/{job.id}/thumbnail")
        assert got.status_code == 200
        max_age = int(got.headers["cache-control"].split("max-age=")[1])
        assert 0 < max_age <= 6  # never cached past the moment it expires
    wait_until(lambda: datetime.now(timezone.utc) > done.expires_at, timeout=30, what="expiry")
    for path in (f"/v1/jobs/{job.id}/thumbnail", f"/v1/jobs/{job.id}/thumbnail/clip"):
        assert_404(client.http.get(path))
    wait_until(lambda: not any(p.is_file() for p in videos.rglob("*")), timeout=15, what="all swept")


def test_thumbnails_in_s3_are_presigned_downloads(system: System, s3: int) -> None:
    system.settings.update(stack_env(s3, s3, MOCHI_VIDEO_URL_EXPIRY_S="600"))
    system.start_catalog()
    system.start_runner()
    system.start_api()
    client = system.client()
    job = client.submit("a cat walks on the grass", **SMALL)
    assert client.wait(job.id, timeout=120).status == "completed"
    for key, path, content_type in ((thumbnail_key(job.id), "thumbnail", THUMBNAIL_CONTENT_TYPE),
                                    (thumbnail_clip_key(job.id), "thumbnail/clip", THUMBNAIL_CLIP_CONTENT_TYPE)):
        answer = client.http.get(f"/v1/jobs/{job.id}/{path}")
        assert answer.status_code == 307, answer.text
        url = answer.headers["location"]
        assert url.startswith(f"http://localhost:{s3}/{BUCKET}/{key}?")
        got = httpx.get(url)
        assert got.status_code == 200 and got.headers["content-type"] == content_type
        if content_type == THUMBNAIL_CONTENT_TYPE:
            check_poster(got.content, 64, 1.0)
        else:
            assert check_clip(got.content, 64, 1.0)[0] == SMALL["num_frames"]
    # Gone from the store (a runner that could not make it, or an early
    # sweep): a problem+json 404, never a redirect to the store's own error.
    minio_client(s3).remove_object(BUCKET, thumbnail_key(job.id))
    assert_404(client.http.get(f"/v1/jobs/{job.id}/thumbnail"))


def test_a_redelivery_that_finds_the_video_stored_makes_the_thumbnails(system: System, tmp_path: Path) -> None:
    """A runner stored the video and died before its thumbnails and final event:
    the next delivery completes the job without rendering and makes them."""
    system.start_catalog()
    system.start_api()
    client = system.client()
    job = client.submit("waves crash on rocks", **SMALL)
    mp4 = tmp_path / "earlier.mp4"
    encode_mp4(frames(SMALL["num_frames"], SMALL["height"], SMALL["width"]), 24, mp4)
    store = LocalVideoStore(system.root / "videos")
    assert store.put_new(video_key(job.id), mp4, VIDEO_CONTENT_TYPE)
    system.start_runner()
    done = client.wait(job.id, timeout=120)
    assert done.status == "completed" and done.video.size_bytes == mp4.stat().st_size
    assert "started" not in [m.type for m in system.events(f"mochi.jobs.{job.id}.>")]  # no render
    poster = client.http.get(f"/v1/jobs/{job.id}/thumbnail")
    assert poster.status_code == 200
    check_poster(poster.content, 64, 1.0)
    clip = client.http.get(f"/v1/jobs/{job.id}/thumbnail/clip")
    assert clip.status_code == 200 and check_clip(clip.content, 64, 1.0)[0] == SMALL["num_frames"]

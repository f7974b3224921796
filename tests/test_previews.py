"""Live previews and phases (issue 24), on real processes with the tiny model:
the runner stores a preview in the previews bucket at most every
MOCHI_PREVIEW_EVERY_S while it denoises and tells of it on the job's stream;
the API serves it to its owner only, answers 409 before the first and 404
once the job is final; the job's SSE stream carries `preview` and `phase`."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading

import httpx
import nats
import pytest
from nats.js.errors import ObjectNotFoundError
from PIL import Image

from mochi_api.api_keys import new_key
from mochi_cli.client import ApiError, MochiClient
from mochi_cli.main import PHASE_WORDS
from mochi_contracts.phases import PHASES, RUNNER_PHASES
from mochi_contracts.streams import PREVIEW_BUCKET, preview_object
from sse_client import Sse, read_sse
from waits import wait_until

ALICE, ALICE_LINE = new_key("alice")
BOB, BOB_LINE = new_key("bob")
# 25 frames are 5 latent frames, of which the preview shows 4; 96 px wide is a
# 12-latent-wide render, so a 24 px (a quarter) preview. Enough steps that the
# render outlasts several preview intervals on a loaded 2-core machine.
JOB = {"prompt": "a red fox runs through fresh snow", "width": 96, "height": 64, "num_frames": 25,
       "num_inference_steps": 120, "guidance_scale": 1.0}
EVERY_S = 0.3
# The bucket is deleted as soon as a first preview is seen: on a fast machine the
# whole render takes about 2 s, so a slow poll could leave no preview after it.
POLL_S = 0.05


def as_(key: str, system) -> httpx.Client:
    return httpx.Client(base_url=system.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


async def _preview_objects(nats_url: str, job_id: str) -> list[str]:
    """The names of the job's preview objects still in the bucket."""
    nc = await nats.connect(nats_url)
    try:
        bucket = await nc.jetstream().object_store(PREVIEW_BUCKET)
        left = []
        for still in (False, True):
            try:
                await bucket.get_info(preview_object(job_id, still))
                left.append(preview_object(job_id, still))
            except ObjectNotFoundError:
                pass
        return left
    finally:
        await nc.close()


def wait_previews_gone(nats_url: str, job_id: str) -> None:
    """The runner deletes a job's previews right after its final event, so a
    reader that has just seen that event may look before the delete: wait."""
    left: list[str] = []

    def gone() -> bool:
        left[:] = asyncio.run(_preview_objects(nats_url, job_id))
        return not left

    try:
        wait_until(gone, 30, what="the runner to delete the job's previews")
    except AssertionError as err:
        raise AssertionError(f"{err}; still there: {left}") from None


@pytest.fixture
def keyed(system):
    keys = system.root / "keys.txt"
    keys.write_text(f"{ALICE_LINE}\n{BOB_LINE}\n")
    system.start_catalog()
    system.start_api(MOCHI_API_KEYS_FILE=str(keys), MOCHI_ALLOW_ANONYMOUS="false")
    return system


def follow_events(system, job_id: str) -> tuple[list[Sse], threading.Thread]:
    """The job's SSE messages as alice reads them, appended as they come by
    the thread returned (it ends with the stream)."""
    seen: list[Sse] = []

    def follow() -> None:
        for message in read_sse(f"{system.api_url}/v1/jobs/{job_id}/events",
                                {"Authorization": f"Bearer {ALICE}"}, timeout=300):
            seen.append(message)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    return seen, reader


def test_a_live_preview_appears_changes_and_goes_with_the_job(keyed):
    alice, bob = as_(ALICE, keyed), as_(BOB, keyed)
    job = alice.post("/v1/jobs", json=JOB).json()
    jid, preview = job["id"], job["links"]["preview"]
    assert preview == f"/v1/jobs/{jid}/preview"
    assert job["progress"]["phase"] == "queued"

    # Queued (no runner yet): no preview yet, said as a problem.
    resp = alice.get(preview)
    assert resp.status_code == 409, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    # Someone else's job does not exist for bob, whatever the route.
    for path in (preview, f"{preview}?still=true", f"/v1/jobs/{jid}/events"):
        assert bob.get(path).status_code == 404, path

    seen, reader = follow_events(keyed, jid)
    keyed.start_runner(MOCHI_PREVIEW_EVERY_S=str(EVERY_S))

    def previews() -> list[Sse]:
        return [m for m in seen if m.event == "preview"]

    wait_until(lambda: previews(), 240, POLL_S, "a preview event")
    first = alice.get(preview)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/webp"
    assert first.headers["cache-control"] == "no-store"
    image = Image.open(io.BytesIO(first.content))
    assert image.format == "WEBP" and image.is_animated and image.n_frames == 4
    assert image.size == (JOB["width"] // 4, JOB["height"] // 4)
    still = alice.get(preview, params={"still": "true"})
    assert still.status_code == 200 and still.headers["content-type"] == "image/png"
    assert still.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(still.content)).size == image.size
    running = alice.get(f"/v1/jobs/{jid}").json()
    assert running["status"] == "running" and running["progress"]["phase"] == "denoising"
    # The Python client reads the same.
    client = MochiClient(keyed.api_url, api_key=ALICE)
    assert client.preview(jid).startswith(b"RIFF") and client.preview(jid, still=True).startswith(b"\x89PNG")

    # Two previews later the model's estimate has moved on: other bytes.
    count = len(previews())
    wait_until(lambda: len(previews()) >= count + 2, 120, POLL_S, "two more preview events")
    second = alice.get(preview)
    assert second.status_code == 200 and second.content != first.content

    reader.join(timeout=300)
    assert not reader.is_alive(), "the job's event stream did not end"
    assert seen[-1].event == "completed", [m.event for m in seen]

    # Each preview event: the step, the steps, the link (new per step); in step order.
    shown = [m.json for m in previews()]
    steps = [p["step"] for p in shown]
    assert steps == sorted(set(steps)) and 0 < steps[0] and steps[-1] <= JOB["num_inference_steps"]
    assert all(p == {"job_id": jid, "step": p["step"], "total_steps": JOB["num_inference_steps"],
                     "url": f"{preview}?step={p['step']}"} for p in shown), shown
    # The phases, each once, in order, all before the final event.
    phases = [m.json["phase"] for m in seen if m.event == "phase"]
    assert phases == list(RUNNER_PHASES), phases
    # The job's id too: on /v1/events, every job's stream, it says whose phase it is.
    assert all(m.json == {"job_id": jid, "phase": m.json["phase"]} for m in seen if m.event == "phase")
    kinds = [m.event for m in seen]
    assert kinds.index("phase") < kinds.index("progress")  # encoding_prompt comes first
    # The runner's engine encodes the prompt itself: denoising is told before the first step ends.
    told = next(i for i, m in enumerate(seen) if m.event == "phase" and m.json["phase"] == "denoising")
    assert told < kinds.index("progress")
    assert max(i for i, k in enumerate(kinds) if k in ("phase", "preview")) < kinds.index("completed")

    # Gone with the job: 404 (final), and the runner deleted both objects.
    done = alice.get(f"/v1/jobs/{jid}").json()
    assert done["status"] == "completed" and done["progress"]["phase"] == "finished"
    for path in (preview, f"{preview}?still=true"):
        resp = alice.get(path)
        assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/problem+json")
    wait_previews_gone(keyed.nats_url, jid)
    with pytest.raises(ApiError) as gone:
        client.preview(jid)
    assert gone.value.status == 404
    # The client's events name the phases and the previews, as the stream has them.
    replayed = list(client.events(jid))
    assert [e.phase for e in replayed if e.phase] == phases
    assert [e.preview.step for e in replayed if e.preview] == steps
    assert all(e.preview.url == f"{preview}?step={e.preview.step}" for e in replayed if e.preview)

    # On the job stream a preview is a small event: its size, never its bytes.
    on_stream = [m for m in keyed.events(f"mochi.jobs.{jid}.preview")]
    assert len(on_stream) == len(shown)
    assert all(len(m.data) < 1024 and m.event.bytes > 0 for m in on_stream)


def test_mochi_submit_shows_the_phase(keyed):
    assert set(PHASE_WORDS) == set(PHASES)
    keyed.start_runner(MOCHI_PREVIEW_EVERY_S=str(EVERY_S))
    # The CLI polls the job every 0.5 s and must land in its denoising. The
    # whole render of 40 steps took 1.5 s on this 2-core machine under load,
    # less unloaded and on a faster one, so a poll could miss the phase; 120
    # steps render in 1.8 s here unloaded.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mochi_cli.main", "submit", "a cat on a wall", "--api", keyed.api_url,
         "--api-key", ALICE, "--width", "64", "--height", "64", "--frames", "7", "--steps", "120",
         "--guidance", "1.0", "--wait"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    shown = done.stdout.split("\r")
    assert any("denoising" in line for line in shown), done.stdout[-2000:]
    assert "finished" in shown[-1] and "completed" in shown[-1], shown[-1]


async def _delete_previews_bucket(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_object_store(PREVIEW_BUCKET)
    finally:
        await nc.close()


def test_the_previews_bucket_deleted_mid_job_costs_no_job(keyed):
    alice = as_(ALICE, keyed)
    keyed.start_runner(MOCHI_PREVIEW_EVERY_S=str(EVERY_S))
    jid = alice.post("/v1/jobs", json=JOB).json()["id"]
    seen, reader = follow_events(keyed, jid)
    wait_until(lambda: any(m.event == "preview" for m in seen), 240, POLL_S, "a preview event")
    asyncio.run(_delete_previews_bucket(keyed.nats_url))
    deleted_at = len(seen)
    reader.join(timeout=300)
    assert seen[-1].event == "completed", [m.event for m in seen]
    # The runner warned, made the bucket again at its next preview, and went on.
    runner_log = keyed.procs[-1].log()
    assert "preview.store_unavailable" in runner_log, runner_log[-3000:]
    assert any(m.event == "preview" for m in seen[deleted_at:]), [m.event for m in seen[deleted_at:]]
    wait_previews_gone(keyed.nats_url, jid)

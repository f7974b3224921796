"""A prompt goes in over HTTP and an MP4 comes out, through every real part."""

from __future__ import annotations

import io

import av
import httpx

from conftest import SMALL
from waits import wait_until


def decode_mp4(data: bytes) -> tuple[int, int, int, str]:
    with av.open(io.BytesIO(data)) as box:
        stream = box.streams.video[0]
        frames = sum(1 for _ in box.decode(video=0))
        return frames, stream.width, stream.height, stream.codec_context.name


def test_job_goes_queued_running_completed(stack):
    client = stack.client()
    resp = client.http.post("/v1/jobs", json={"prompt": "a cat walks on the grass", **SMALL})
    assert resp.status_code == 202
    job = resp.json()
    assert resp.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["request"]["seed"] is not None

    seen = []
    done = client.wait(job["id"], timeout=120, poll=0.05, on_update=lambda j: seen.append(j.status))
    assert done.status == "completed", done
    ordered = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    assert ordered[-1] == "completed" and set(ordered) <= {"queued", "running", "completed"}

    # The stream tells the whole story, in order, readable by event-type header.
    msgs = stack.events(f"mochi.jobs.{job['id']}.>")
    types = [m.type for m in msgs]
    assert types[0] == "submitted" and types[1] == "started" and types[-1] == "completed"
    steps = [m.event.step for m in msgs if m.type == "progress"]
    assert steps == list(range(1, SMALL["num_inference_steps"] + 1))
    assert msgs[-1].subject == f"mochi.jobs.{job['id']}.final.completed"

    # The list is the catalog's projection: it catches up within moments.
    wait_until(lambda: [j for j in client.list().jobs
                        if j.id == job["id"] and j.status == "completed"], what="list")

    video = client.http.get(f"/v1/jobs/{job['id']}/video")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    frames, width, height, codec = decode_mp4(video.content)
    assert (frames, width, height, codec) == (SMALL["num_frames"], SMALL["width"], SMALL["height"], "h264")
    assert done.video.size_bytes == len(video.content)


def test_video_supports_range_requests(stack):
    client = stack.client()
    job = client.submit("waves crash on rocks", **SMALL)
    client.wait(job.id, timeout=120)
    url = f"/v1/jobs/{job.id}/video"
    whole = client.http.get(url).content
    part = client.http.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-99/{len(whole)}"
    assert part.content == whole[10:100]
    tail = client.http.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == whole[-16:]
    beyond = client.http.get(url, headers={"Range": f"bytes={len(whole) + 5}-"})
    assert beyond.status_code == 416


def test_default_size_renders_848x480(stack):
    client = stack.client()
    job = client.submit("a red car drives along a road by the sea", num_frames=7, num_inference_steps=2)
    assert (job.request.width, job.request.height) == (848, 480)
    done = client.wait(job.id, timeout=300)
    assert done.status == "completed", done
    frames, width, height, _ = decode_mp4(client.http.get(f"/v1/jobs/{job.id}/video").content)
    assert (frames, width, height) == (7, 848, 480)


def test_read_your_writes_without_the_catalog(system):
    """The API keeps no state, and a GET right after the POST finds the job
    even when the catalog is not there to answer."""
    system.start_api()
    client = system.client()
    job = client.submit("a person dances in a city street", **SMALL)
    got = client.get(job.id)
    assert got.id == job.id and got.status == "queued"
    cancelled = client.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert client.get(job.id).status == "cancelled"


def test_list_filters_and_paginates_newest_first(stack):
    client = stack.client()
    ids = [client.submit(f"a bird flying over a forest {i}", **SMALL).id for i in range(5)]
    client.cancel(ids[1])
    client.cancel(ids[3])
    wait_until(lambda: len(client.list(status=["cancelled"]).jobs) == 2, what="catalog")
    page1 = client.list(limit=2)
    page2 = client.list(limit=2, cursor=page1.next_cursor)
    page3 = client.list(limit=2, cursor=page2.next_cursor)
    listed = [j.id for j in page1.jobs + page2.jobs + page3.jobs]
    assert listed == list(reversed(ids))
    assert page3.next_cursor is None
    cancelled = [j.id for j in client.list(status=["cancelled"]).jobs]
    assert cancelled == [ids[3], ids[1]]
    assert httpx.get(f"{stack.api_url}/v1/jobs", params={"status": "bogus"}).status_code == 422

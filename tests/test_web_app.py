"""The web app in a real Chromium against the running stack and the tiny
model: submit, watch, play, download, cancel, run again, filter."""

from __future__ import annotations

import time
from pathlib import Path

from web_browser import browser, fill_form, needs_chromium, open_app, page, web_stack  # noqa: F401

pytestmark = needs_chromium


def test_submit_watch_progress_play_and_download(page, web_stack) -> None:  # noqa: F811
    open_app(page, web_stack.api_url)
    # Bounds come from the API's schema and show before anything is submitted.
    assert page.inner_text("#h-width") == "64–1280 px, multiple of 16"
    assert "1–163 frames of the form 6k+1" in page.inner_text("#h-num_frames")
    page.evaluate("window.notReloaded = true")

    fill_form(page, "a paper boat on a stream", frames=7, fps=7, steps=30)
    page.click("#submit")
    link = page.locator("#form-status a")
    job_id = link.get_attribute("href").rsplit("/", 1)[1]
    # The bar moves through the steps and the row completes, from events alone.
    sample = """id => { const li = document.getElementById('job-' + id);
                        const bar = li.querySelector('progress'), step = li.querySelector('.phase');
                        return [li.dataset.status, bar && bar.value, step && step.textContent]; }"""
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    while (now := page.evaluate(sample, job_id))[0] != "completed":
        assert time.monotonic() < deadline, f"never completed; steps seen {sorted(seen)}"
        _, value, text = now
        if value is not None and 0 < int(value) < 30:
            seen.add(int(value))
            assert text == f"denoising step {int(value)} of 30", text
        time.sleep(0.05)
    assert len({s for s in seen if 0 < s < 30}) >= 3, sorted(seen)
    assert page.evaluate("window.notReloaded") is True

    # The job page: video of the right length, playing; download is the MP4.
    link.click()
    video = page.locator("#job-video video")
    video.wait_for()
    page.wait_for_function("document.querySelector('#job-video video').readyState >= 1")
    assert abs(video.evaluate("v => v.duration") - 7 / 7) < 0.05
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("(v => v.currentTime > 0 || v.ended)(document.querySelector('#job-video video'))")
    assert page.locator("#timeline").inner_text().count("\n") >= 3
    # The job's own log, from its event stream: where it ran and what it stored.
    page.wait_for_function("document.querySelectorAll('#job-log li').length >= 2")
    log = page.inner_text("#job-log")
    assert "started on" in log and "stored" in log, log
    assert page.locator("#job-log-empty").is_hidden()

    with page.expect_download() as got:
        page.get_by_role("link", name="Download MP4").click()
    body = Path(got.value.path()).read_bytes()
    assert body[4:8] == b"ftyp"
    assert len(body) == web_stack.client().get(job_id).video.size_bytes

    # Run again, asked to keep the seed: back on the form with the same settings, seed included.
    seed = web_stack.client().get(job_id).request.seed
    page.get_by_role("button", name="Run again with the same seed").click()
    assert page.input_value("#f-prompt") == "a paper boat on a stream"
    assert page.input_value("#f-steps") == "30"
    assert page.input_value("#f-seed") == str(seed)
    assert page.input_value("#f-preset") == "64x64"
    assert page.evaluate("window.notReloaded") is True


def test_cancel_a_running_job(page, web_stack) -> None:  # noqa: F811
    client = web_stack.client()
    # Long enough on two cores to be caught running (64x64 at 200 steps took 1.2 s in one CI run).
    job = client.submit("a very long render", width=256, height=256, num_frames=31, num_inference_steps=200)
    open_app(page, web_stack.api_url, f"#/jobs/{job.id}")
    page.wait_for_selector('#job-status:text("running")', timeout=60_000)
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_selector('#job-status:text("cancelled")', timeout=120_000)
    assert page.inner_text("#job-error").startswith("Cancelled:")
    timeline = page.inner_text("#timeline")
    assert "cancel requested" in timeline and "cancelled" in timeline
    assert page.get_by_role("button", name="Cancel job").count() == 0
    assert client.get(job.id).status == "cancelled"


def test_bad_settings_show_their_field_errors(page, web_stack) -> None:  # noqa: F811
    open_app(page, web_stack.api_url)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    # Found by the page from the schema's bounds: nothing is sent.
    fill_form(page, "a lighthouse")
    page.fill("#f-width", "100")
    page.click("#submit")
    assert "multiple of 16" in page.inner_text("#e-width")
    assert page.get_attribute("#f-width", "aria-invalid") == "true"
    assert posts == []

    # Found by the API: its message lands beside the field it names.
    page.fill("#f-width", "64")
    page.fill("#f-length", "8")
    page.click("#submit")
    page.wait_for_selector("#e-num_frames:not([hidden])")
    assert "6k+1" in page.inner_text("#e-num_frames") and "nearest below is 7" in page.inner_text("#e-num_frames")
    assert page.is_hidden("#e-width")
    page.fill("#f-length", "7")
    page.fill("#f-prompt", "   ")
    page.click("#submit")
    page.wait_for_selector("#e-prompt:not([hidden])")
    assert "more than whitespace" in page.inner_text("#e-prompt")
    assert len(posts) == 2


def test_status_filter_and_load_more(page, web_stack) -> None:  # noqa: F811
    client = web_stack.client()
    # Jobs cancelled while queued are listed at once and cost no rendering.
    for i in range(22):
        client.cancel(client.submit(f"filler {i}", width=64, height=64, num_frames=7,
                                    num_inference_steps=200).id)
    total = len(list(client.iter_jobs()))
    open_app(page, web_stack.api_url)
    page.wait_for_selector("#job-list li")
    assert page.locator("#job-list li").count() == 20
    page.get_by_role("button", name="Load more").click()
    page.wait_for_function(f"document.querySelectorAll('#job-list li').length === {total}")
    assert page.is_hidden("#load-more")

    page.get_by_label("completed").check()
    page.wait_for_function(
        "[...document.querySelectorAll('#job-list li')].every(li => li.dataset.status === 'completed')")
    completed = len(list(client.iter_jobs(status=["completed"])))
    assert page.locator("#job-list li").count() == completed >= 1

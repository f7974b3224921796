"""The form never misleads: no silent clamping, errors that say what to do and
go once fixed, the seed and rate-limit messages, the estimate before submit,
the draft a newcomer starts from; the job page's run again, download name and
loop; filters in the URL, search and counts; axe-core finds no violation."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from conftest import SMALL
from web_browser import browser, fill_form, needs_chromium, open_app, page, web_stack  # noqa: F401

pytestmark = needs_chromium

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def test_length_beyond_the_maximum_is_said_and_not_submitted(page, web_stack) -> None:  # noqa: F811
    open_app(page, web_stack.api_url)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.fill("#f-prompt", "a boat")
    page.select_option("#f-length-unit", "seconds")
    page.fill("#f-fps", "30")
    page.fill("#f-length", "10")
    assert "300 frames is too long" in page.inner_text("#h-num_frames")
    page.click("#submit")
    error = page.inner_text("#e-num_frames")
    assert "300 frames" in error and "at most 163" in error and "5.4 s" in error, error
    assert page.get_attribute("#f-length", "aria-invalid") == "true"
    # Fixed: the message goes at once, before any submit.
    page.fill("#f-length", "5")
    assert page.is_hidden("#e-num_frames") and page.get_attribute("#f-length", "aria-invalid") is None
    # A seed past int64 says what to type, not the decoder's text.
    page.fill("#f-seed", "99999999999999999999")
    page.click("#submit")
    assert "from 0 to 9223372036854775807" in page.inner_text("#e-seed")
    assert posts == []
    page.fill("#f-seed", "42")
    assert page.is_hidden("#e-seed")


def test_rate_limit_gives_the_seconds_from_retry_after(page, web_stack) -> None:  # noqa: F811
    def limited(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.method != "POST":
            return route.continue_()
        route.fulfill(status=429, headers={"content-type": "application/problem+json", "Retry-After": "37"},
                      json={"status": 429, "title": "Too many requests", "detail": "60 per minute"})

    page.route("**/v1/jobs", limited)
    open_app(page, web_stack.api_url)
    fill_form(page, "one too many")
    page.click("#submit")
    page.wait_for_selector("#e-body:not([hidden])")
    assert "try again in 37 s" in page.inner_text("#e-body")


def test_estimate_before_submit_and_the_draft_preset(page, web_stack) -> None:  # noqa: F811
    web_stack.client().wait(web_stack.client().submit("pace sample", **SMALL).id, timeout=180)
    open_app(page, web_stack.api_url)
    # Served on loopback: the embedded stack, so the form opens on a draft, not 848x480x163x64.
    page.wait_for_selector("#draft-note:not([hidden])")
    assert int(page.input_value("#f-width")) <= 512 and int(page.input_value("#f-steps")) <= 24
    page.wait_for_selector("#estimate:not([hidden])")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.post_data or "") if r.url.endswith("/v1/estimates") else None)
    fill_form(page, "a small one", frames=7, fps=7, steps=4)
    # The API's answer (POST /v1/estimates) for what the form holds now; the page has no pace formula.
    page.wait_for_function("/About \\d+ (s|min) here/.test(document.querySelector('#estimate').textContent)")
    assert page.get_attribute("#estimate", "data-warn") == "false"
    assert asked and '"num_inference_steps":4' in asked[-1] and '"width":64' in asked[-1], asked
    said = httpx.post(f"{web_stack.api_url}/v1/estimates", timeout=30, json={
        "prompt": "a small one", "width": 64, "height": 64, "num_frames": 7, "fps": 7, "num_inference_steps": 4}).json()
    assert said["work_seconds"] is not None and said["beyond_experience"] is False, said
    work = said["work_seconds"]
    # As format.js's formatDuration says it (Math.round: halves up).
    assert page.inner_text("#estimate").startswith(f"About {max(1, math.floor(work + 0.5))} s here" if work < 90
                                                   else f"About {math.floor(work / 60 + 0.5)} min here")
    # Far beyond anything rendered here: said before the click.
    page.get_by_role("button", name="Use Mochi's reference settings").click()
    assert page.input_value("#f-width") == "848" and page.input_value("#f-steps") == "64"
    page.wait_for_selector('#estimate[data-warn="true"]')
    assert "largest job this deployment has finished" in page.inner_text("#estimate")
    # The request as curl and Python.
    fill_form(page, "copy me", frames=7, fps=7, steps=4)
    page.click("summary:text('Copy as curl / Python')")
    snippet = page.inner_text("#snippets")
    assert "curl -s -X POST" in snippet and '"prompt":"copy me"' in snippet and "MochiClient(" in snippet


def test_run_again_download_name_loop_focus_and_filters(page, web_stack) -> None:  # noqa: F811
    open_app(page, web_stack.api_url)
    fill_form(page, "A paper boat, on a stream!", frames=7, fps=7, steps=4)
    page.click("#submit")
    job_id = page.locator("#form-status a").get_attribute("href").rsplit("/", 1)[1]
    page.wait_for_selector(f'#job-{job_id}[data-status="completed"]', timeout=180_000)
    page.locator(f"#job-{job_id} .job-link").click()
    page.wait_for_selector("#job-video video")
    assert page.get_attribute("#download", "download") == f"a-paper-boat-on-a-stream-{job_id[:8]}.mp4"
    assert page.eval_on_selector("#job-video video", "v => v.loop") is True  # 1 s: it loops

    # Back: the keyboard is on the job's row again.
    page.get_by_role("link", name="← All jobs").click()
    page.wait_for_function(f"document.activeElement.closest('#job-{job_id}') !== null")

    # Run again: a fresh seed unless asked to keep it; the keyboard on the prompt.
    seed = str(web_stack.client().get(job_id).request.seed)
    page.locator(f"#job-{job_id} .job-link").click()
    page.get_by_role("button", name="Run again with a new seed").click()
    assert page.input_value("#f-prompt") == "A paper boat, on a stream!" and page.input_value("#f-seed") == ""
    assert page.evaluate("document.activeElement.id") == "f-prompt"
    page.go_back()
    page.get_by_role("button", name="Run again with the same seed").click()
    assert page.input_value("#f-seed") == seed

    # Filters and search live in the URL, and come back from it.
    page.get_by_label("completed").check()
    page.fill("#job-search", "paper boat")
    page.wait_for_function("location.hash.includes('status=completed') && location.hash.includes('q=paper')")
    page.reload()
    page.wait_for_selector(f"#job-{job_id}")
    assert page.is_checked("#filter-completed") and page.input_value("#job-search") == "paper boat"
    visible = page.locator('#job-list li:not([data-search="miss"])')
    assert visible.count() >= 1 and all("paper boat" in t.lower() for t in visible.all_inner_texts())
    assert "match" in page.inner_text("#job-counts") and "completed" in page.inner_text("#job-counts")


def test_phone_reaches_the_job_list_without_scrolling_past_the_form(browser, web_stack) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        open_app(phone, web_stack.api_url)
        jump = phone.get_by_role("link", name="Jump to the job list")
        assert jump.bounding_box()["y"] < 844
        jump.click()
        # The list's heading is on screen (and has the keyboard), the form scrolled past.
        phone.wait_for_function("(t => t >= 0 && t < innerHeight)"
                                "(document.querySelector('#jobs-title').getBoundingClientRect().top)")
        assert phone.evaluate("document.activeElement.id") == "jobs-title"
    finally:
        context.close()


@pytest.mark.parametrize("where", ["home", "job"])
def test_axe_finds_no_violation(page, web_stack, where: str) -> None:  # noqa: F811
    job = web_stack.client().submit("checked by axe", **{**SMALL, "fps": 7})
    web_stack.client().wait(job.id, timeout=180)
    open_app(page, web_stack.api_url, "#/" if where == "home" else f"#/jobs/{job.id}")
    if where == "job":
        page.wait_for_selector("#job-video video")
    else:
        page.wait_for_selector("#job-list li")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    violations = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:5]) for v in result["violations"]]
    assert violations == [], violations

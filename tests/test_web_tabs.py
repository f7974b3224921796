"""One event connection per browser whatever the number of tabs: eight tabs
(home pages and job pages) stay live on one stream, through the SharedWorker
and, without SharedWorker, through a leader tab; a job page left and opened
again shows each event once."""

from __future__ import annotations

import time

import httpx

from conftest import SMALL
from mochi_contracts.phases import RUNNER_PHASES
from web_browser import browser, needs_chromium, open_app, web_stack  # noqa: F401

pytestmark = needs_chromium

ALL_EVENTS = "/v1/events"
JOB_EVENTS = "/v1/jobs/{job_id:str}/events"


def open_streams(api_url: str, path: str) -> int:
    """Event streams open on the API now, from its own request gauge."""
    total = 0.0
    for line in httpx.get(f"{api_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("mochi_api_requests_in_progress{") and f'path="{path}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def settle(api_url: str, want: dict[str, int], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := {p: open_streams(api_url, p) for p in want}) != want:
        assert time.monotonic() < deadline, f"open streams {now}, wanted {want}"
        time.sleep(0.2)


def eight_tabs(context, api_url: str, job_id: str) -> list:  # type: ignore[no-untyped-def]
    tabs = []
    for i in range(8):
        tab = context.new_page()
        tab.on("console", lambda m, i=i: print(i, "console:", m.type, m.text))
        open_app(tab, api_url, "#/" if i % 2 == 0 else f"#/jobs/{job_id}")
        tabs.append(tab)
    return tabs


def all_see_a_new_job(tabs, client) -> None:  # type: ignore[no-untyped-def]
    job = client.submit("seen by every tab", **SMALL)
    for tab in tabs:
        if tab.url.endswith("#/"):
            tab.wait_for_selector(f'#job-{job.id}[data-status="completed"]', timeout=180_000)
        assert tab.get_attribute("#live-state", "data-state") == "open"


def test_eight_tabs_share_one_stream(browser, web_stack) -> None:  # noqa: F811
    client = web_stack.client()
    before = {ALL_EVENTS: open_streams(web_stack.api_url, ALL_EVENTS),
              JOB_EVENTS: open_streams(web_stack.api_url, JOB_EVENTS)}
    shown = client.submit("one job, four pages", **SMALL)
    context = browser.new_context()
    try:
        tabs = eight_tabs(context, web_stack.api_url, shown.id)
        assert {t.evaluate("document.documentElement.dataset.feed") for t in tabs} == {"WorkerFeed"}
        # One stream for all eight; the job pages read their history and let it go.
        settle(web_stack.api_url, {ALL_EVENTS: before[ALL_EVENTS] + 1, JOB_EVENTS: before[JOB_EVENTS]})
        for tab in tabs[1::2]:
            tab.wait_for_selector('#job-status:text("completed")', timeout=180_000)
        all_see_a_new_job(tabs, client)
        assert open_streams(web_stack.api_url, ALL_EVENTS) == before[ALL_EVENTS] + 1
    finally:
        context.close()
    settle(web_stack.api_url, before)


def test_without_shared_worker_a_leader_tab_holds_the_stream(browser, web_stack) -> None:  # noqa: F811
    client = web_stack.client()
    before = open_streams(web_stack.api_url, ALL_EVENTS)
    shown = client.submit("one job, a leader", **SMALL)
    context = browser.new_context()
    context.add_init_script("delete window.SharedWorker")
    try:
        tabs = eight_tabs(context, web_stack.api_url, shown.id)
        assert {t.evaluate("document.documentElement.dataset.feed") for t in tabs} == {"LeaderFeed"}
        settle(web_stack.api_url, {ALL_EVENTS: before + 1})
        # The leader (the first tab, which took the lock) goes: another takes over.
        tabs.pop(0).close()
        settle(web_stack.api_url, {ALL_EVENTS: before + 1})
        all_see_a_new_job(tabs, client)
        assert open_streams(web_stack.api_url, ALL_EVENTS) == before + 1
    finally:
        context.close()


def test_a_job_page_opened_again_shows_each_event_once(browser, web_stack) -> None:  # noqa: F811
    client = web_stack.client()
    job = client.submit("opened, left, opened again", **{**SMALL, "num_inference_steps": 60})
    context = browser.new_context()
    page = context.new_page()
    try:
        open_app(page, web_stack.api_url, f"#/jobs/{job.id}")
        page.wait_for_selector("#timeline li")
        for _ in range(3):  # away and back while it renders
            page.evaluate("location.hash = '#/'")
            page.wait_for_selector("#home-view:not([hidden])")
            page.evaluate(f"location.hash = '#/jobs/{job.id}'")
            page.wait_for_selector("#timeline li")
        page.wait_for_selector('#job-status:text("completed")', timeout=180_000)
        page.wait_for_selector("#timeline .event-completed")
        counts = page.evaluate("""() => Object.fromEntries(['submitted', 'started', 'progress', 'phase', 'completed']
            .map(t => [t, document.querySelectorAll('#timeline .event-' + t).length]))""")
        # Each phase the runner went through once (encoding the prompt ... storing).
        assert counts == {"submitted": 1, "started": 1, "progress": 1, "phase": len(RUNNER_PHASES),
                          "completed": 1}, counts
        phases = page.locator("#timeline .event-phase .detail").all_inner_texts()
        assert phases == ["encoding the prompt", "denoising", "decoding", "encoding the video", "storing"], phases
        lines = len(client.logs(job.id))
        page.wait_for_function(f"document.querySelectorAll('#job-log li').length >= {lines}")
        time.sleep(1)  # a duplicate would arrive about now
        assert page.locator("#job-log li").count() == lines
        assert page.locator("#timeline li").count() == 4 + len(RUNNER_PHASES)
    finally:
        context.close()

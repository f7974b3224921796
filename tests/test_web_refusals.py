"""A refused event shows on its job's page in the web app: a warning line in
the job's log naming the event and why, never what it carried, and the job's
status, timeline and video are its own."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import SMALL
from mochi_contracts import subjects
from mochi_contracts.event_codec import encode_event
from mochi_contracts.events import JobLog
from test_api_streams_hardening import _completed, publish, publish_raw
from web_browser import browser, needs_chromium, open_app, page, web_stack  # noqa: F401

pytestmark = needs_chromium


def _run(coro: Any) -> Any:
    # Playwright's sync API keeps an event loop running in this thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_a_refused_event_is_a_warning_line_on_the_job_page(page, web_stack) -> None:  # noqa: F811
    client = web_stack.client()
    other = client.submit("a quiet harbour", **SMALL)
    job = client.submit("a lighthouse in the fog", **{**SMALL, "num_inference_steps": 30})
    # While it waits or renders (a job's stream ends at its final event): a completed body naming
    # the other job's video on this job's log subject, and bytes that are not UTF-8.
    bad = _run(publish_raw(web_stack.nats_url, [
        (subjects.job_logs(job.id), encode_event(_completed(job.id, other.id))[0], {}),
        (subjects.job_logs(job.id), b"\xff\xfe not utf-8", {}),
    ]))
    _run(publish(web_stack.nats_url, JobLog(job_id=job.id, level="info", message="a true line")))
    assert client.wait(job.id, timeout=180).status == "completed"

    open_app(page, web_stack.api_url, f"#/jobs/{job.id}")
    page.wait_for_selector('#job-status:text("completed")')
    page.wait_for_function("[...document.querySelectorAll('#job-log li')].some(li => "
                           "li.textContent.includes('a true line'))")
    warnings = page.locator("#job-log li.log-warning").all_inner_texts()
    refused = [w for w in warnings if "refused" in w]
    assert len(refused) == 2, warnings
    for seq, line in zip(bad, refused, strict=True):
        assert f"event {seq} on {subjects.job_logs(job.id)} refused:" in line, line
        assert "mallory" not in line and "not utf-8" not in line  # why, never what it carried
    # The same lines as the API's log of the job, and nothing else moved.
    assert page.locator("#job-log li").count() == len(client.logs(job.id))
    assert page.locator("#timeline .event-completed").count() == 1
    assert page.locator("#timeline .event-rejected").count() == 0

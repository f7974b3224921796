"""The web app's live view rides out an API restart: it says the API is
unreachable, reconnects by itself and shows what happened meanwhile."""

from __future__ import annotations

from conftest import SMALL
from mochi_cli.processes import spawn_service, wait_for_http
from web_browser import browser, needs_chromium, open_app, page  # noqa: F401

pytestmark = needs_chromium


def test_live_view_reconnects_after_an_api_restart(page, system) -> None:  # noqa: F811
    system.start_catalog()
    system.start_runner()
    api = system.start_api()
    port = system.api_url.rsplit(":", 1)[1]
    open_app(page, system.api_url)
    page.evaluate("window.notReloaded = true")
    earlier = system.client().submit("before the restart", **SMALL)

    api.stop()
    page.wait_for_selector('#live-state[data-state="retrying"]')
    page.wait_for_selector("#banner:not([hidden])")
    assert "Cannot reach the API" in page.inner_text("#banner")
    # A job page opened meanwhile says it cannot load, and loads once the API is back.
    page.evaluate(f"location.hash = '#/jobs/{earlier.id}'")
    page.wait_for_selector("#job-view h2:text('Job not shown')")

    # The same address again, as a restarted Deployment's Service would be.
    env = system.env(MOCHI_PORT=port, MOCHI_ALLOW_ANONYMOUS="true")
    again = system._add(spawn_service("api", env, system.logs, name="api-again"))
    wait_for_http(f"{system.api_url}/readyz", timeout=60, proc=again.popen)
    page.wait_for_selector('#live-state[data-state="open"]', timeout=60_000)
    page.wait_for_selector("#banner", state="hidden")
    page.wait_for_selector("#job-status")
    assert page.inner_text("#job-view h2") == "before the restart"
    page.evaluate("location.hash = '#/'")

    job = system.client().submit("after the restart", **SMALL)
    page.wait_for_selector(f'#job-{job.id}[data-status="completed"]', timeout=180_000)
    assert page.evaluate("window.notReloaded") is True

"""The web app with API keys, on a phone-sized screen, and by keyboard."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from conftest import SMALL
from web_browser import browser, fill_form, needs_chromium, open_app, page, web_stack  # noqa: F401

pytestmark = needs_chromium

REFUSED = {"status": 401, "title": "API key required", "detail": "send 'Authorization: Bearer <key>'"}
KEY = "msk_gateway"
# page.route does not see a SharedWorker's requests, so the tests that stand a
# keyed gateway in front of the API run the leader-tab path of event_feed.js,
# whose stream the page itself opens.
NO_SHARED_WORKER = "delete window.SharedWorker"


def keyed_gateway(route) -> None:  # type: ignore[no-untyped-def]
    """A deployment with keys in front of the test API (which runs without):
    a /v1 call without the key is refused, one with it goes on without it."""
    url = urlsplit(route.request.url)
    query = dict(parse_qsl(url.query))
    headers = {k: v for k, v in route.request.headers.items() if k != "authorization"}
    keyed = route.request.headers.get("authorization") == f"Bearer {KEY}" or (
        url.path.endswith("/events") and query.get("api_key") == KEY)
    if not keyed:
        route.fulfill(status=401, json=REFUSED, headers={"content-type": "application/problem+json"})
        return
    query.pop("api_key", None)
    route.continue_(url=url._replace(query=urlencode(query)).geturl(), headers=headers)


def test_refused_key_is_explained_and_a_new_key_is_sent(page, web_stack) -> None:  # noqa: F811
    def refuse(route) -> None:  # type: ignore[no-untyped-def]
        # Stands in for a deployment with keys: every /v1 call is refused.
        route.fulfill(status=401, json=REFUSED, headers={"content-type": "application/problem+json"})

    page.add_init_script(NO_SHARED_WORKER)
    page.route("**/v1/**", refuse)
    page.goto(f"{web_stack.api_url}/#/")
    page.wait_for_selector("#banner:not([hidden])")
    assert "needs a valid API key (HTTP 401" in page.inner_text("#banner")

    page.get_by_role("button", name="Enter API key").click()
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.keyboard.type("msk_example")
    # EventSource cannot send headers: its URL carries the key.
    with page.expect_request(lambda r: "/v1/events?" in r.url and "api_key=msk_example" in r.url), \
            page.expect_request(lambda r: "/v1/jobs" in r.url
                                and r.headers.get("authorization") == "Bearer msk_example"):
        page.keyboard.press("Enter")
    assert page.evaluate("localStorage.getItem('mochi-serve.api-key')") == "msk_example"

    # Kept across a reload.
    page.reload()
    page.wait_for_function("document.querySelector('#api-key').value === 'msk_example'")


def test_phone_screen_and_keyboard(browser, web_stack) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        open_app(phone, web_stack.api_url)
        no_sideways_scroll = "document.documentElement.scrollWidth <= window.innerWidth"
        assert phone.evaluate(no_sideways_scroll)
        unlabelled = phone.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(el => el.offsetParent !== null)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.textContent.trim())
            .map(el => el.id || el.outerHTML)""")
        assert unlabelled == []

        # Tab from the top reaches the prompt, then the submit button, in order.
        order = []
        for _ in range(40):
            phone.keyboard.press("Tab")
            order.append(phone.evaluate("document.activeElement.id"))
            if order[-1] == "submit":
                break
        assert "f-prompt" in order and order[-1] == "submit", order
        assert order.index("f-prompt") < order.index("f-length") < order.index("submit")

        # Submit with the keyboard alone, then open the job page: still no sideways scroll.
        fill_form(phone, "a kite over a beach")
        phone.focus("#submit")
        phone.keyboard.press("Enter")
        phone.locator("#form-status a").focus()
        phone.keyboard.press("Enter")
        phone.wait_for_selector("#job-status")
        assert phone.evaluate(no_sideways_scroll)
    finally:
        context.close()


def test_with_a_key_the_video_plays_and_downloads(page, web_stack) -> None:  # noqa: F811
    page.add_init_script(NO_SHARED_WORKER)
    page.route("**/v1/**", keyed_gateway)
    page.add_init_script(f"localStorage.setItem('mochi-serve.api-key', '{KEY}')")
    job = web_stack.client().submit("a keyed video", **{**SMALL, "fps": 7})
    open_app(page, web_stack.api_url, f"#/jobs/{job.id}")
    page.wait_for_selector('#job-status:text("completed")', timeout=180_000)
    page.wait_for_function("(v => v && v.readyState >= 1)(document.querySelector('#job-video video'))")
    assert abs(page.eval_on_selector("#job-video video", "v => v.duration") - 1.0) < 0.05
    with page.expect_download() as got:
        page.get_by_role("link", name="Download MP4").click()
    assert Path(got.value.path()).read_bytes()[4:8] == b"ftyp"
    assert page.is_hidden("#banner")

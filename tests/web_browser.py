"""Fixtures for the web app's tests: Debian's Chromium driven by Playwright
(never a downloaded browser), and one stack the web tests share."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import System

CHROMIUM = Path("/usr/bin/chromium")
# What keeps a headless Chromium quiet and self-contained on a machine without
# a display, a GPU or the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None,
    reason="browser tests need Debian's chromium (apt-get install chromium) at /usr/bin/chromium "
           "and Playwright for Python (pip install playwright); no browser is downloaded")


def launch(playwright):  # type: ignore[no-untyped-def]
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    # An uncaught exception in the app is a failure even if the screen looked right.
    assert not errors, errors


@pytest.fixture(scope="session")
def web_stack(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[System]:
    """nats-server, catalog, one runner and the API, shared by the web tests
    (they assert on their own jobs, so sharing only saves start-up time)."""
    system = System(root=tmp_path_factory.mktemp("web"), model_dir=tiny_model)
    system.start_nats()
    try:
        system.start_catalog()
        # A live preview every second, so a short render shows several.
        system.start_runner(wait=True, MOCHI_PREVIEW_EVERY_S="1")
        system.start_api()
        yield system
    finally:
        system.stop()


def open_app(page, url: str, hash_: str = "#/") -> None:  # type: ignore[no-untyped-def]
    """The app loaded, its bounds read and its live stream open."""
    page.goto(f"{url}/{hash_}")
    if hash_ == "#/":
        page.wait_for_selector("#submit:not([disabled])")
    page.wait_for_selector('#live-state[data-state="open"]')


def fill_form(page, prompt: str, *, frames: int = 7, fps: int = 7, steps: int = 4,  # type: ignore[no-untyped-def]
              preset: str = "64x64") -> None:
    page.fill("#f-prompt", prompt)
    page.select_option("#f-preset", preset)
    page.select_option("#f-length-unit", "frames")
    page.fill("#f-length", str(frames))
    page.fill("#f-fps", str(fps))
    page.fill("#f-steps", str(steps))

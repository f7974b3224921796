"""Screenshots of the web app's main screens for the README, desktop and
phone (the gallery with posters and a live preview, a job rendering, a job
completed), from a real stack with the tiny model and Debian's Chromium:

    .venv/bin/python tests/web_screenshots.py        # writes docs/screenshots/*.png
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from conftest import System
from mochi_runner.tiny_model import ensure_tiny_model
from web_browser import CHROMIUM, launch

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
TINY = {"width": 64, "height": 64, "num_frames": 7, "fps": 7}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def wait(check, what: str, timeout: float = 300.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)
    return found


def jobs(system: System) -> dict[str, str]:
    """A gallery of each kind of tile: completed (posters), running (its live
    preview), queued and cancelled."""
    client = system.client()
    done = client.submit("a paper boat drifting down a stream", **TINY, num_inference_steps=8, seed=7)
    for prompt, seed in (("autumn leaves falling in a park", 11), ("a hummingbird at a red flower", 12)):
        client.submit(prompt, **TINY, num_inference_steps=8, seed=seed)
    client.wait(done.id, timeout=300)
    # Long enough to still be rendering through every screenshot.
    running = client.submit("waves rolling onto a beach at sunset", **{**TINY, "width": 192, "height": 192,
                            "num_frames": 49}, num_inference_steps=200)
    queued = client.submit("a red fox walking through fresh snow", **TINY, num_inference_steps=8)
    cancelled = client.submit("city lights at night, timelapse", **TINY, num_inference_steps=8)
    client.cancel(cancelled.id)
    wait(lambda: client.get(running.id).progress.step >= 20, "the running job's progress")
    return {"done": done.id, "running": running.id, "queued": queued.id}


def shoot(browser, url: str, name: str, viewport: dict, ready: str, full_page: bool = True,  # type: ignore[no-untyped-def]
          then: str | None = None) -> None:
    context = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE, device_scale_factor=1)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector('#live-state[data-state="open"]')
    page.wait_for_function(ready)
    if then:
        page.evaluate(then)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=full_page)
    context.close()
    print(f"wrote {OUT / name}.png")


def main() -> None:
    if not CHROMIUM.exists():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        system = System(root=Path(tmp), model_dir=ensure_tiny_model(Path(tmp) / "tiny-mochi"))
        system.start_nats()
        try:
            system.start_catalog()
            system.start_runner(wait=True)
            system.start_api()
            ids = jobs(system)
            base = system.api_url
            # Posters loaded, and the running tile's live preview on screen.
            tiles = "document.querySelectorAll('#job-list li').length >= 6"
            listed = (f"{tiles} && !!document.querySelector('#job-list img.tile-preview') && [...document"
                      ".querySelectorAll('#job-list img.tile-poster')].filter(i => i.naturalWidth).length >= 3")
            video = "(v => v && v.readyState >= 2)(document.querySelector('#job-video video'))"
            running = ("(i => i && i.naturalWidth > 0)(document.querySelector('#job-preview img.preview-image'))"
                       " && document.querySelector('#timeline').children.length >= 3")
            with sync_playwright() as pw:
                browser = launch(pw)
                # The running job's first, while it still renders.
                shoot(browser, f"{base}/#/jobs/{ids['running']}", "job-running-desktop", DESKTOP, running)
                shoot(browser, f"{base}/#/jobs/{ids['running']}", "job-running-phone", PHONE, running, full_page=False)
                shoot(browser, f"{base}/#/", "home-desktop", DESKTOP, listed, full_page=False)
                # One column: the posters further down load as they scroll near (loading=lazy).
                shoot(browser, f"{base}/#/", "gallery-phone", PHONE,
                      f"{tiles} && !!document.querySelector('#job-list img.tile-preview')", full_page=False,
                      then="document.querySelector('#jobs-title').scrollIntoView()")
                shoot(browser, f"{base}/#/", "home-phone", PHONE, tiles, full_page=False)
                shoot(browser, f"{base}/#/jobs/{ids['done']}", "job-completed-desktop", DESKTOP, video)
                shoot(browser, f"{base}/#/jobs/{ids['done']}", "job-completed-phone", PHONE, video, full_page=False)
                browser.close()
        finally:
            system.stop()


if __name__ == "__main__":
    main()

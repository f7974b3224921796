"""The gallery and the live view in Chromium against the real stack: a running
job's tile and page show its live preview, which changes during the render,
and its phase, which moves on; a queued job's start redraws as time passes;
completed tiles show their posters, a hover plays the muted clip (made only
then), and a poster that is not there leaves the status in words."""

from __future__ import annotations

from pathlib import Path

from web_browser import browser, needs_chromium, open_app, page, web_stack  # noqa: F401

pytestmark = needs_chromium

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
TINY = {"width": 64, "height": 64, "num_frames": 13, "fps": 7}

# Every phase any [data-phase] element shows, in the order first seen.
WATCH_PHASES = """() => {
  window.phasesSeen = [];
  const note = () => document.querySelectorAll('[data-phase]').forEach((el) => {
    if (!window.phasesSeen.includes(el.dataset.phase)) window.phasesSeen.push(el.dataset.phase);
  });
  new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true });
  note();
}"""


def assert_no_axe_violation(tab) -> None:  # type: ignore[no-untyped-def]
    tab.add_script_tag(path=str(AXE))
    result = tab.evaluate("axe.run(document, {resultTypes: ['violations']})")
    violations = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:5]) for v in result["violations"]]
    assert violations == [], violations


def test_live_preview_and_phase_on_the_tile_and_the_job_page(browser, web_stack) -> None:  # noqa: F811
    client = web_stack.client()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(120_000)
    try:
        home = context.new_page()
        open_app(home, web_stack.api_url)
        # Long enough on a loaded machine for several previews (one a second) before it ends.
        job = client.submit("a lighthouse in a storm", **{**TINY, "width": 128, "height": 128, "num_frames": 25},
                            num_inference_steps=200)
        # The job page, open from the start: every phase it goes through shows on it.
        page_ = context.new_page()
        open_app(page_, web_stack.api_url, f"#/jobs/{job.id}")
        page_.evaluate(WATCH_PHASES)

        # The tile: the live preview arrives on the shared stream and changes as the render goes on.
        tile = f"#job-{job.id}"
        home.wait_for_selector(f"{tile} .tile-media[data-media='preview'] img.tile-preview")
        first = home.get_attribute(f"{tile} .tile-media", "data-preview-step")
        assert first and int(first) >= 1
        assert home.get_attribute(f"{tile} img.tile-preview", "alt").endswith("a lighthouse in a storm")
        home.wait_for_function(f"(b => b.dataset.previewStep && b.dataset.previewStep !== '{first}')"
                               f"(document.querySelector('{tile} .tile-media'))")
        assert home.inner_text(f"{tile} .phase").startswith("denoising step ")

        # The job page: a preview that changes during the render.
        page_.wait_for_selector("#job-preview .preview-frame img.preview-image")
        assert page_.get_attribute("#job-preview img", "alt").endswith("a lighthouse in a storm")
        shown = page_.get_attribute("#job-preview img", "src")
        page_.wait_for_function(f"(i => i && i.getAttribute('src') !== {shown!r} && i.naturalWidth > 0)"
                                "(document.querySelector('#job-preview img'))")
        assert "Live preview after step" in page_.inner_text("#job-preview figcaption")
        assert_no_axe_violation(page_)  # the page mid-render, with its live preview

        # A queued job behind it: its start is redrawn as time passes, with no event of its own.
        queued = client.submit("waiting its turn", **TINY, num_inference_steps=4)
        waiting = context.new_page()
        open_app(waiting, web_stack.api_url, f"#/jobs/{queued.id}")
        waiting.wait_for_selector("#job-progress .rel[data-at]")
        waiting.evaluate("document.querySelector('#job-progress .rel').textContent = 'stale'")
        waiting.wait_for_function("""async () => {
            const el = document.querySelector('#job-progress .rel');
            const { formatIn } = await import('/js/format.js');
            return el && el.textContent !== 'stale' && el.textContent === formatIn(el.dataset.at);
        }""", timeout=15_000)
        waiting.close()

        # The phase named in words as it moves on, through to the end.
        page_.wait_for_selector("#job-video video", timeout=300_000)
        assert page_.is_hidden("#job-preview")
        seen = page_.evaluate("window.phasesSeen")
        assert "denoising" in seen and any(p in seen for p in ("decoding", "encoding_video", "storing")), seen
        later = [p for p in ("decoding", "encoding_video", "storing") if p in seen]
        assert [seen.index(p) for p in later] == sorted(seen.index(p) for p in later), seen
        assert seen.index("denoising") < seen.index(later[0]), seen
        timeline = page_.inner_text("#timeline")
        assert "phase" in timeline and "decoding" in timeline and "storing" in timeline, timeline
        # The tile took the poster once it completed.
        home.wait_for_selector(f"{tile} .tile-media[data-media='poster'] img.tile-poster")
    finally:
        context.close()


def test_posters_and_a_hover_plays_the_clip(page, web_stack) -> None:  # noqa: F811
    client = web_stack.client()
    done = [client.wait(client.submit(f"a poster {i}", **TINY, num_inference_steps=4).id, timeout=180)
            for i in range(2)]
    assert all(j.status == "completed" for j in done)
    missing = done[1].id
    # One poster the API cannot find (its video expired, say): the tile says what the job is.
    page.route(f"**/v1/jobs/{missing}/thumbnail", lambda route: route.fulfill(
        status=404, headers={"content-type": "application/problem+json"},
        json={"status": 404, "title": "Not found", "detail": "no thumbnail"}))
    open_app(page, web_stack.api_url)
    tile = f"#job-{done[0].id}"
    page.wait_for_function("(i => i && i.complete && i.naturalWidth > 0)"
                           f"(document.querySelector('{tile} img.tile-poster'))")
    assert page.get_attribute(f"{tile} img.tile-poster", "alt") == "a poster 0"
    page.wait_for_selector(f"#job-{missing} .tile-fallback:text('completed · no poster')")
    # No clip is loaded until one is asked for.
    assert page.locator("#job-list video").count() == 0

    page.hover(f"{tile} .tile-media")
    page.wait_for_selector(f"{tile} .tile-media[data-clip='playing']")
    page.wait_for_function("(v => v && v.muted && v.loop && v.currentTime > 0)"
                           f"(document.querySelector('{tile} video'))")
    assert page.locator("#job-list video").count() == 1
    # Leaving stops it and lets the video go.
    page.mouse.move(0, 0)
    page.wait_for_function(f"!document.querySelector('{tile} video')")
    # The job without a poster plays nothing.
    page.hover(f"#job-{missing} .tile-media")
    page.wait_for_timeout(500)
    assert page.locator("#job-list video").count() == 0

    assert_no_axe_violation(page)  # the gallery with posters and a fallback

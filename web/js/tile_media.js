// The picture on a job's tile: the poster of a completed job (hover, keyboard
// focus or a tap plays its muted clip, made only then: a list of fifty tiles
// loads fifty small JPEGs, never fifty videos), the live preview of a running
// one, and the status in words where there is no picture (yet, or any more).

import { h } from "./dom.js";
import { dropMedia, showMedia, swapImage } from "./media.js";

// The tile whose clip plays now: one at a time.
let playing = null;

function wanted(job) {
  if (job.status === "completed") return { kind: "poster", url: job.links?.thumbnail };
  if (job.status === "running" && job.preview?.url) return { kind: "preview", url: job.preview.url };
  if (job.status === "running") return { kind: "waiting" };
  return { kind: "status" };
}

function fallback(text) {
  return h("span", { class: "tile-fallback" }, text);
}

export function renderTileMedia(box, job) {
  const want = wanted(job);
  const had = box.shownMedia;
  if (had && had.kind === want.kind && had.url === want.url) return;
  box.shownMedia = want;
  box.dataset.media = want.kind;
  const prompt = job.request.prompt;
  if (want.kind === "preview") {
    const current = box.querySelector("img.tile-preview");
    if (!current) box.replaceChildren(fallback("rendering: loading the preview…"));
    const placeholder = current || box.firstChild;
    swapImage(placeholder, want.url, `Live preview at step ${job.preview.step}: ${prompt}`, "tile-preview")
      .then((img) => {
        // A preview gone (the job ended meanwhile) leaves what the next render put there.
        if (img && box.shownMedia === want) box.dataset.previewStep = String(job.preview.step);
      });
    return;
  }
  stopClip(box);
  if (want.kind === "poster" && want.url) {
    const img = h("img", { class: "tile-poster", alt: prompt, loading: "lazy", decoding: "async" });
    box.replaceChildren(img);
    showMedia(img, want.url).then((ok) => {
      if (ok || box.shownMedia !== want) return;
      // No poster (made before thumbnails existed, or its video expired): say what the job is.
      box.dataset.media = "status";
      box.replaceChildren(fallback("completed · no poster"));
    }).catch(() => {});
    return;
  }
  box.replaceChildren(fallback(want.kind === "waiting" ? "rendering: no preview yet" : job.status));
}

// Hover (a mouse or a pen), keyboard focus within the tile, or a tap on its
// picture plays the clip; leaving stops it and lets the video go.
export function setUpClip(li, jobOf) {
  const box = li.querySelector(".tile-media");
  li.addEventListener("pointerenter", (e) => e.pointerType !== "touch" && playClip(box, jobOf()));
  li.addEventListener("pointerleave", (e) => e.pointerType !== "touch" && stopClip(box));
  li.addEventListener("focusin", () => playClip(box, jobOf()));
  li.addEventListener("focusout", (e) => !li.contains(e.relatedTarget) && stopClip(box));
  // A tap toggles (a mouse's click would only stop what its hover started).
  let touched = false;
  box.addEventListener("pointerdown", (e) => (touched = e.pointerType === "touch"));
  box.addEventListener("click", () => {
    if (!touched) return;
    if (box.querySelector("video")) stopClip(box);
    else playClip(box, jobOf());
  });
}

function playClip(box, job) {
  if (!job || box.dataset.media !== "poster" || box.querySelector("video")) return;
  if (playing && playing !== box) stopClip(playing);
  playing = box;
  const video = h("video", { class: "tile-clip", muted: true, defaultMuted: true, loop: true, playsInline: true,
                             preload: "auto", "aria-hidden": "true" });
  video.addEventListener("playing", () => (box.dataset.clip = "playing"));
  box.dataset.clip = "loading";
  box.append(video);
  showMedia(video, job.links.thumbnail_clip).then((ok) => {
    if (!video.isConnected) return;
    if (!ok) {
      // No clip: the poster stays, and the tile says nothing went wrong.
      stopClip(box);
      box.dataset.clip = "none";
      return;
    }
    video.play().catch(() => {}); // a muted clip may autoplay; if the browser says no, the poster stays
  }).catch(() => stopClip(box));
}

function stopClip(box) {
  const video = box.querySelector("video");
  if (playing === box) playing = null;
  if (!video) return;
  video.pause();
  dropMedia(video);
  video.remove();
  delete box.dataset.clip;
}

// One job: its live preview and phase while it renders, its settings, its
// event timeline and its log (its history read once
// from the job's own stream, then its events from the browser's one shared
// stream, each shown once: deduplicated by event id), the video, and what can
// be done next.

import { ApiError, cancelJob, fetchVideo, getJob } from "./api.js";
import { h } from "./dom.js";
import { formatBytes, formatDateTime, formatSeconds } from "./format.js";
import { swapImage } from "./media.js";
import { applyEvent, isFinal, withPace } from "./job_state.js";
import { JobLog } from "./job_log.js";
import { getKey } from "./key.js";
import { homeHash } from "./job_filters.js";
import { readHistory } from "./job_history.js";
import { FEED_TYPES } from "./live.js";
import { PaceRefresh } from "./pace.js";
import { progressView } from "./progress_view.js";
import { Timeline } from "./timeline.js";

const PREVIEW_PLACEHOLDER = "No preview yet: the first one comes after a few steps.";
// Clips shorter than this loop, so they are seen before they end.
const LOOP_BELOW_S = 4;

// "a-paper-boat-on-a-stream-1a2b3c4d.mp4": the prompt, then whose job it is.
export function downloadName(job) {
  const slug = job.request.prompt.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
    .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60).replace(/-+$/, "");
  return `${slug || "mochi"}-${job.id.slice(0, 8)}.mp4`;
}

const SETTINGS = [
  ["prompt", "Prompt"], ["negative_prompt", "Negative prompt"], ["width", "Width"], ["height", "Height"],
  ["num_frames", "Frames"], ["fps", "Frames per second"], ["num_inference_steps", "Steps"],
  ["guidance_scale", "Guidance"], ["seed", "Seed"],
];

export class JobPage {
  constructor(root, { feed, onRunAgain }) {
    this.root = root;
    this.feed = feed;
    this.onRunAgain = onRunAgain;
    this.unsubscribe = null;
    this.abort = null;
    this.job = null;
    // The finish estimate is the API's: asked again after steps (pace.js).
    this.pace = new PaceRefresh((fresh) => {
      const next = this.job && withPace(this.job, fresh);
      if (next && next !== this.job) {
        this.job = next;
        this.update();
      }
    });
  }

  async show(id) {
    this.close();
    this.wanted = id;
    this.job = null;
    this.root.replaceChildren(h("p", { class: "muted" }, "Loading job…"));
    let job;
    try {
      job = await getJob(id);
    } catch (err) {
      if (this.wanted !== id) return; // the user has moved on
      const missing = err instanceof ApiError && err.status === 404;
      this.root.replaceChildren(backLink(), h("h2", { tabindex: "-1" }, "Job not shown"),
        h("p", {}, missing ? `There is no job ${id} that this API key may see.` : err.message));
      this.root.querySelector("h2").focus();
      return;
    }
    if (this.wanted !== id) return;
    this.job = job;
    this.render();
    this.root.querySelector("h2").focus();
    this.attach(id);
  }

  // Live events are taken from the shared stream from now on, and held back
  // until the history is read, so the timeline stays in order.
  attach(id) {
    this.seen = new Set();
    this.held = [];
    this.replaying = true;
    this.unsubscribe = this.feed.on((type, ev, eventId) => {
      // A phase that names no job may be this one's: its resource says (pace.js).
      if (type === "phase" && !ev.job_id) {
        if (!this.replaying && this.job?.status === "running") this.pace.stepped(id);
        return;
      }
      if (ev.job_id !== id) return;
      if (this.replaying) this.held.push([type, ev, eventId]);
      else this.take(type, ev, eventId);
    });
    this.readPast();
  }

  async readPast() {
    const abort = (this.abort = new AbortController());
    try {
      await readHistory(this.job.links.events, { signal: abort.signal, onEvent: (...e) => this.take(...e) });
    } catch {
      return; // the API is away: retry() reads it again when the feed is back
    } finally {
      if (this.abort === abort) this.abort = null;
    }
    if (abort.signal.aborted) return;
    this.replaying = false;
    const held = this.held.sort((a, b) => Number(a[2]) - Number(b[2]));
    this.held = [];
    for (const event of held) this.take(...event);
  }

  take(type, ev, id) {
    if (!FEED_TYPES.includes(type) && type !== "rejected") return; // one this page does not show
    if (id) {
      if (this.seen.has(id)) return;
      this.seen.add(id);
    }
    // An event on this job's subjects that the API refused: a warning line in the job's log
    // (what GET …/logs says too), never what it carried, and it changes nothing else.
    if (type === "rejected") this.log.refused(ev);
    else this.onEvent(type, ev);
  }

  close() {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.abort?.abort();
    this.abort = null;
    if (this.videoBlobUrl) URL.revokeObjectURL(this.videoBlobUrl);
    this.videoBlobUrl = null;
  }

  leave() {
    this.close();
    this.wanted = null;
  }

  // A page that could not load its job (API down, key refused) tries again
  // when the API is back; a loaded one keeps its own stream.
  retry() {
    if (!this.job && this.wanted) this.show(this.wanted);
    else if (this.job && this.replaying && !this.abort) this.readPast();
  }

  // A new key may see other jobs: read the page again.
  async restart() {
    if (this.wanted) await this.show(this.wanted);
  }

  render() {
    const job = this.job;
    this.actionsState = null;
    this.timeline = new Timeline(h("ol", { class: "timeline", id: "timeline" }));
    this.log = new JobLog();
    this.preview = { shown: null, tried: false };
    this.root.replaceChildren(
      backLink(),
      h("h2", { tabindex: "-1", class: "job-title" }, job.request.prompt),
      h("p", { class: "job-id" }, h("span", { class: "badge", id: "job-status" }), ` job ${job.id}`),
      h("div", { id: "job-progress" }),
      h("figure", { id: "job-preview", class: "job-preview", hidden: true },
        h("div", { class: "preview-frame" }, h("p", { class: "preview-placeholder" }, PREVIEW_PLACEHOLDER)),
        h("figcaption", { class: "muted" }, "")),
      h("p", { id: "job-error", class: "error-text", hidden: true }),
      h("div", { id: "job-video" }),
      h("div", { class: "actions", id: "job-actions" }),
      h("section", { "aria-labelledby": "settings-title" }, h("h3", { id: "settings-title" }, "Settings"), h("div", { id: "job-settings" })),
      h("section", { "aria-labelledby": "timeline-title" }, h("h3", { id: "timeline-title" }, "Timeline"), this.timeline.list),
      h("section", { "aria-labelledby": "log-title" }, h("h3", { id: "log-title" }, "Log"), this.log.empty, this.log.list),
    );
    this.update();
  }

  update() {
    const job = this.job;
    const badge = this.root.querySelector("#job-status");
    badge.textContent = job.status;
    badge.className = `badge status-${job.status}`;
    this.root.querySelector("#job-progress").replaceChildren(isFinal(job) ? "" : progressView(job));
    const error = this.root.querySelector("#job-error");
    error.hidden = !job.error;
    error.textContent = job.error ? `${job.status[0].toUpperCase()}${job.status.slice(1)}: ${job.error}` : "";
    this.root.querySelector("#job-settings").replaceChildren(settingsList(job));
    this.renderPreview();
    this.renderVideo();
    this.renderActions();
  }

  // The newest preview while the job runs: swapped in once it has loaded, so
  // it never flashes empty; a placeholder until the first. A page opened mid-
  // render asks for the latest at once (409 until there is one).
  renderPreview() {
    const job = this.job;
    const figure = this.root.querySelector("#job-preview");
    const frame = figure.querySelector(".preview-frame");
    if (job.status !== "running") {
      figure.hidden = true;
      if (this.preview.shown) frame.replaceChildren(h("p", { class: "preview-placeholder" }, PREVIEW_PLACEHOLDER));
      this.preview = { shown: null, tried: false };
      delete frame.dataset.step;
      return;
    }
    figure.hidden = false;
    let url = job.preview?.url;
    if (!url && !this.preview.tried) url = job.links.preview;
    this.preview.tried = true;
    if (!url || url === this.preview.shown || url === this.preview.asked) return;
    this.preview.asked = url;
    const step = job.preview?.step;
    const alt = `Live preview${step ? ` at step ${step}` : ""}: ${job.request.prompt}`;
    swapImage(frame.firstElementChild, url, alt, "preview-image").then((img) => {
      if (this.preview.asked === url) this.preview.asked = null;
      if (!img) return;
      this.preview.shown = url;
      frame.dataset.step = step ? String(step) : "latest";
      figure.querySelector("figcaption").textContent = step
        ? `Live preview after step ${step} of ${job.preview.total_steps}: the model's current guess at the video, `
          + "at a quarter of its size."
        : "Live preview: the model's current guess at the video, at a quarter of its size.";
    });
  }

  async renderVideo() {
    const slot = this.root.querySelector("#job-video");
    if (this.job.status !== "completed" || !this.job.video || slot.dataset.for === this.job.id) return;
    slot.dataset.for = this.job.id;
    const v = this.job.video;
    const src = await this.videoSource();
    if (!src) return;
    const short = v.num_frames / v.fps < LOOP_BELOW_S;
    slot.append(
      h("video", { controls: true, playsInline: true, preload: "metadata", src, loop: short,
                   poster: this.job.links.thumbnail || null,
                   "aria-label": `Video: ${this.job.request.prompt}`, width: v.width, height: v.height }),
      h("p", { class: "muted" },
        `${v.width}×${v.height}, ${v.num_frames} frames at ${v.fps} fps (${formatSeconds(v.num_frames / v.fps)}), ${formatBytes(v.size_bytes)}`));
    this.renderActions();
  }

  // Without a key the video's own URL streams with Range requests (or
  // redirects to the store). A <video> or a link cannot send the key, so with
  // one the video is fetched with it and played from memory.
  async videoSource() {
    if (!getKey()) return this.job.links.video;
    if (this.videoBlobUrl) return this.videoBlobUrl;
    try {
      this.videoBlobUrl = URL.createObjectURL(await fetchVideo(this.job.links.video));
      return this.videoBlobUrl;
    } catch (err) {
      const slot = this.root.querySelector("#job-video");
      slot.append(h("p", { class: "error-text" }, `The video could not be loaded: ${err.message}`));
      return null;
    }
  }

  renderActions() {
    const job = this.job;
    // Rebuilt only when they change: a progress event must not take the
    // keyboard focus (or a half-done click) away from a button.
    const src = job.status === "completed" && job.video ? (getKey() ? this.videoBlobUrl : job.links.video) : null;
    const state = `${job.status} ${job.cancel_requested} ${src}`;
    if (state === this.actionsState) return;
    this.actionsState = state;
    const buttons = [];
    if (src) buttons.push(h("a", { class: "button", id: "download", href: src, download: downloadName(job) }, "Download MP4"));
    if (!isFinal(job)) {
      buttons.push(h("button", { type: "button", id: "cancel", disabled: job.cancel_requested,
                                 onclick: () => this.cancel() }, job.cancel_requested ? "Cancelling…" : "Cancel job"));
    }
    buttons.push(h("button", { type: "button", id: "run-again", onclick: () => this.onRunAgain(job.request) },
                   "Run again with a new seed"),
                 h("button", { type: "button", id: "run-again-same",
                               onclick: () => this.onRunAgain(job.request, { keepSeed: true }) },
                   "Run again with the same seed"));
    const actions = this.root.querySelector("#job-actions");
    // A rebuild while the keyboard is on an action keeps it there (or on the next one, if it went).
    const focused = actions.contains(document.activeElement) ? document.activeElement.id || "run-again" : null;
    actions.replaceChildren(...buttons);
    if (focused) (actions.querySelector(`#${focused}:not([disabled])`) || actions.querySelector("#run-again")).focus();
  }

  async cancel() {
    const button = this.root.querySelector("#cancel");
    button.disabled = true;
    try {
      this.job = { ...(await cancelJob(this.job.id)), request: this.job.request };
      this.update();
      // The cancel button is now disabled ("Cancelling…"): the keyboard goes to the next action.
      this.root.querySelector("#run-again").focus();
    } catch (err) {
      // 409: it finished meanwhile; its final event is on the way.
      if (!(err instanceof ApiError && err.status === 409)) button.disabled = false;
    }
  }

  onEvent(type, ev) {
    if (type === "log") {
      this.log.add(ev);
      return;
    }
    // A preview every few seconds would drown the timeline: it shows on the picture.
    if (type !== "preview") this.timeline.add(type, ev);
    this.job = applyEvent(this.job, type, ev);
    this.update();
    if ((type === "progress" || type === "phase") && this.job.status === "running") this.pace.stepped(this.job.id);
    if (isFinal(this.job)) this.refresh();
  }

  // The final event has the video; the job resource has the rest exactly.
  async refresh() {
    try {
      const fresh = await getJob(this.job.id);
      if (fresh.id === this.job?.id) {
        this.job = fresh;
        this.update();
      }
    } catch {
      // what the events said stays on screen
    }
  }
}

function backLink() {
  return h("p", {}, h("a", { href: homeHash() }, "← All jobs"));
}

function settingsList(job) {
  const dl = h("dl", { class: "settings" });
  for (const [key, label] of SETTINGS) {
    const value = job.request[key];
    dl.append(h("dt", {}, label), h("dd", {}, value === "" || value === null ? "—" : String(value)));
  }
  dl.append(h("dt", {}, "Submitted"), h("dd", {}, formatDateTime(job.created_at)));
  if (job.started_at) dl.append(h("dt", {}, "Started"), h("dd", {}, formatDateTime(job.started_at)));
  if (job.finished_at) dl.append(h("dt", {}, "Finished"), h("dd", {}, formatDateTime(job.finished_at)));
  if (job.runner) dl.append(h("dt", {}, "Runner"), h("dd", {}, `${job.runner} (attempt ${job.attempts})`));
  return dl;
}

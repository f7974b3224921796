// One job in the gallery: a tile with its picture (tile_media.js), its
// prompt, status and progress. Tiles are updated in place, so keyboard focus
// on a tile survives a progress event.

import { h } from "./dom.js";
import { formatClock, shortId } from "./format.js";
import { progressView } from "./progress_view.js";
import { renderTileMedia, setUpClip } from "./tile_media.js";

export function jobRow(job) {
  const li = h("li", { class: "job tile", id: `job-${job.id}` });
  li.append(
    h("div", { class: "tile-media" }),
    h("div", { class: "tile-text" },
      h("a", { class: "job-link", href: `#/jobs/${job.id}` },
        h("span", { class: "prompt" }, job.request.prompt),
        h("span", { class: "visually-hidden" }, ` (job ${shortId(job.id)})`)),
      h("span", { class: "badge" }),
      h("span", { class: "meta" }),
      h("div", { class: "live" })),
  );
  setUpClip(li, () => li.job);
  updateRow(li, job);
  return li;
}

export function updateRow(li, job) {
  const r = job.request;
  li.job = job;
  li.dataset.status = job.status;
  renderTileMedia(li.querySelector(".tile-media"), job);
  const badge = li.querySelector(".badge");
  badge.textContent = job.status;
  badge.className = `badge status-${job.status}`;
  li.querySelector(".meta").textContent =
    `${r.width}×${r.height} · ${r.num_frames} frames · ${r.num_inference_steps} steps · ${formatClock(job.created_at)}`;
  const live = li.querySelector(".live");
  live.replaceChildren(progressView(job));
  if (job.error && job.status === "failed") live.append(h("p", { class: "error-text" }, job.error));
}

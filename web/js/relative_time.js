// "in 3 min" goes stale while a page stays open: every such text is a
// <span class="rel" data-at="<iso>"> that is redrawn every few seconds.

import { h } from "./dom.js";
import { formatIn } from "./format.js";

export const REDRAW_MS = 5000;

export function relativeTime(iso) {
  return h("span", { class: "rel", "data-at": iso }, formatIn(iso));
}

export function redrawRelativeTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll(".rel[data-at]")) {
    const text = formatIn(el.dataset.at, now);
    if (el.textContent !== text) el.textContent = text;
  }
}

export function keepRelativeTimesFresh() {
  return setInterval(() => redrawRelativeTimes(), REDRAW_MS);
}

// A job's history as its event stream replays it. Progress events come one a
// step, so a run of them is one line that counts up.

import { h } from "./dom.js";
import { formatBytes, formatClock } from "./format.js";
import { phaseWords } from "./phase.js";

export class Timeline {
  constructor(list) {
    this.list = list;
    this.progressItem = null;
  }

  add(type, ev) {
    if (type === "progress" && this.progressItem) {
      this.progressItem.querySelector(".detail").textContent = this.progressText(ev);
      return;
    }
    if (type === "progress") this.firstStep = ev.step;
    const item = h("li", { class: `event event-${type}` },
      h("time", { datetime: ev.time }, formatClock(ev.time)), " ",
      h("strong", {}, type.replace("_", " ")), " ",
      h("span", { class: "detail" }, type === "progress" ? this.progressText(ev) : detail(type, ev)));
    this.progressItem = type === "progress" ? item : null;
    this.list.append(item);
  }

  progressText(ev) {
    return `step ${this.firstStep ?? ev.step} → ${ev.step} of ${ev.total_steps}`;
  }
}

function detail(type, ev) {
  switch (type) {
    case "submitted": return "queued";
    case "started": return `on ${ev.runner}, attempt ${ev.attempt}`;
    case "cancel_requested": return `by ${ev.requested_by}`;
    case "phase": return phaseWords(ev.phase);
    case "completed": return `${ev.video.width}×${ev.video.height}, ${ev.video.num_frames} frames, ${formatBytes(ev.video.size_bytes)}`;
    case "failed": return `${ev.reason} (after ${ev.attempts} attempts)`;
    case "cancelled": return ev.reason;
    case "expired": return ev.reason;
    default: return "";
  }
}

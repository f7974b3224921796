// A job's progress as the list and the job page both show it: the bar, step
// x of y, and when it should start or finish.

import { h } from "./dom.js";
import { formatClock, formatIn, shortId } from "./format.js";

export function progressView(job) {
  const { step, total_steps: total } = job.progress;
  const wrap = h("div", { class: "progress" });
  // A queued job has no steps yet: its place in the queue says more.
  if (job.status === "running") {
    wrap.append(h("progress", { max: total || 1, value: step, "aria-label": `Progress of job ${shortId(job.id)}` }),
                h("span", { class: "step" }, `step ${step} of ${total}`));
  }
  const note = timing(job);
  if (note) wrap.append(h("span", { class: "timing" }, note));
  return wrap;
}

function timing(job) {
  if (job.status === "queued") {
    const where = job.queue_position ? `#${job.queue_position} in queue` : "queued";
    const when = job.estimated_start_at ? ` · starts about ${formatClock(job.estimated_start_at)} (${formatIn(job.estimated_start_at)})` : "";
    return where + when;
  }
  if (job.status === "running") {
    if (job.cancel_requested) return "cancelling…";
    if (job.estimated_finish_at) return `finishes about ${formatClock(job.estimated_finish_at)} (${formatIn(job.estimated_finish_at)})`;
    return "started, estimating…";
  }
  return "";
}

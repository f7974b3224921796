// A job's progress as the gallery and the job page both show it: the bar,
// the phase in words ("denoising step 3 of 8", "decoding"), and when it
// should start or finish (redrawn as time passes: relative_time.js).

import { h } from "./dom.js";
import { formatClock, shortId } from "./format.js";
import { phaseOf, phaseText } from "./phase.js";
import { relativeTime } from "./relative_time.js";

export function progressView(job) {
  const { step, total_steps: total } = job.progress;
  const wrap = h("div", { class: "progress" });
  // A queued job has no steps yet: its place in the queue says more.
  if (job.status === "running") {
    wrap.append(h("progress", { max: total || 1, value: step, "aria-label": `Progress of job ${shortId(job.id)}` }),
                h("span", { class: "phase", "data-phase": phaseOf(job) }, phaseText(job)));
  }
  const note = timing(job);
  if (note) wrap.append(h("span", { class: "timing" }, ...note));
  return wrap;
}

function timing(job) {
  if (job.status === "queued") {
    const where = job.queue_position ? `#${job.queue_position} in queue` : "queued";
    if (!job.estimated_start_at) return [where];
    return [`${where} · starts about ${formatClock(job.estimated_start_at)} (`, relativeTime(job.estimated_start_at), ")"];
  }
  if (job.status === "running") {
    if (job.cancel_requested) return ["cancelling…"];
    if (job.estimated_finish_at) {
      return [`finishes about ${formatClock(job.estimated_finish_at)} (`, relativeTime(job.estimated_finish_at), ")"];
    }
    return ["estimating…"];
  }
  return null;
}

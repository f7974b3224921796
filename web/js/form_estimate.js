// How long the form's job would take here, before it is submitted: the pace
// of this deployment's recent completed jobs (metrics.seconds_per_step from
// GET /v1/jobs) scaled by the job's steps and size, plus the work ahead of it
// in the queue. Also the draft preset a newcomer's first video starts from.

import { listJobs } from "./api.js";
import { formatDuration } from "./format.js";

const RECENT = 50;
// Above this many times the costliest job this deployment completed, the
// estimate is a guess: the form says so.
const FAR_BEYOND = 4;
const FRESH_MS = 10_000;

// Mochi's transformer sees 2x2 patches of an 8x-downsampled, 6x-in-time latent:
// a step's work grows with this count. Linear in it, which is close at small
// sizes and low at large ones (attention is quadratic): the estimate tells a
// minute from an hour, not 50 s from 60 s.
export function latentTokens({ width, height, num_frames: frames }) {
  return (width / 16) * (height / 16) * ((frames - 1) / 6 + 1);
}

function cost(request) {
  return latentTokens(request) * request.num_inference_steps;
}

export class Pace {
  constructor() {
    this.done = [];
    this.ahead = [];
    this.readAt = 0;
  }

  async refresh(force = false) {
    if (!force && Date.now() - this.readAt < FRESH_MS) return;
    this.readAt = Date.now();
    const [done, ahead] = await Promise.all([
      listJobs({ statuses: ["completed"], limit: RECENT }),
      listJobs({ statuses: ["queued", "running"], limit: RECENT }),
    ]);
    this.done = done.jobs.filter((j) => j.metrics?.seconds_per_step > 0);
    this.ahead = ahead.jobs;
  }

  // Seconds per step for `request`, from the completed job nearest in size; null without any.
  perStep(request) {
    const tokens = latentTokens(request);
    let best = null;
    for (const job of this.done) {
      const distance = Math.abs(Math.log(latentTokens(job.request) / tokens));
      if (!best || distance < best.distance) best = { job, distance };
    }
    if (!best) return null;
    return best.job.metrics.seconds_per_step * (tokens / latentTokens(best.job.request));
  }

  renderSeconds(request) {
    const perStep = this.perStep(request);
    return perStep === null ? null : perStep * request.num_inference_steps;
  }

  // Seconds of work before a new job starts, with one runner (a guess with more).
  queueSeconds() {
    let total = 0;
    for (const job of this.ahead) {
      if (job.status === "running" && job.estimated_finish_at) {
        total += Math.max(0, (new Date(job.estimated_finish_at).getTime() - Date.now()) / 1000);
      } else {
        const own = this.renderSeconds(job.request);
        if (own !== null) total += own * (1 - (job.progress?.fraction || 0));
      }
    }
    return total;
  }

  // {text, warn} for the form, or null when nothing was measured here yet.
  describe(request) {
    const render = this.renderSeconds(request);
    if (render === null) return null;
    const queue = this.queueSeconds();
    const costliest = Math.max(...this.done.map((j) => cost(j.request)));
    const beyond = cost(request) / costliest;
    let text = `About ${formatDuration(render)} to render here`;
    text += queue >= 1 ? `, after about ${formatDuration(queue)} of jobs ahead of it.` : ", starting at once.";
    if (beyond > FAR_BEYOND) {
      return { warn: true, text: `${text} That is ${Math.round(beyond)}× the largest job this deployment has `
        + "finished, so it may take much longer: try fewer frames, fewer steps or a smaller size first." };
    }
    return { warn: false, text };
  }

  // The largest draft expected to render within `budget` seconds; the smallest without a measure.
  draft(drafts, budget = 45) {
    const fits = drafts.filter((d) => (this.renderSeconds(d) ?? Infinity) <= budget);
    return fits.at(-1) || drafts[0];
  }
}

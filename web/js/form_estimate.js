// How long the form's job would take here, before it is submitted: the API's
// answer (POST /v1/estimates: this deployment's measured pace scaled to the
// job, plus the queue; mochi_contracts/job_cost.py), never a formula of this
// page's. Asked again at most once per DEBOUNCE_MS while the user types.
// Also the draft preset a newcomer's first video starts from.

import { estimateJob } from "./api.js";
import { formatClock, formatDuration } from "./format.js";

const DEBOUNCE_MS = 400;
// A first video within a minute: the draft's render plus the page's own time.
const DRAFT_BUDGET_S = 45;

// The request as the estimate needs it: the prompt's text changes nothing in the time.
function estimable(request) {
  const { seed, ...rest } = request;
  return { ...rest, prompt: request.prompt.trim() ? request.prompt : "estimate" };
}

// {text, warn, state} for the form from the API's JobEstimate.
export function describeEstimate(est) {
  if (est.work_seconds === null) {
    return { state: "unmeasured", warn: false,
             text: "No job has finished here yet, so there is no measured pace to say how long it would take." };
  }
  let text = `About ${formatDuration(est.work_seconds)} here`;
  text += est.queue_seconds >= 1 ? `, after about ${formatDuration(est.queue_seconds)} of jobs ahead of it`
    : ", starting at once";
  if (est.estimated_finish_at) text += ` (done about ${formatClock(est.estimated_finish_at)})`;
  text += ".";
  if (est.beyond_experience) {
    return { state: "beyond", warn: true,
             text: `${text} That is ${Math.round(est.times_largest)}× the largest job this deployment has finished, `
               + "so it may take much longer: try fewer frames, fewer steps or a smaller size first." };
  }
  return { state: "measured", warn: false, text };
}

export class FormEstimate {
  // show(said | null): null hides the estimate (nothing to estimate, or no answer).
  constructor(show) {
    this.show = show;
    this.timer = null;
    this.generation = 0;
  }

  // request null: the form has errors, nothing is asked.
  ask(request, { now = false } = {}) {
    clearTimeout(this.timer);
    const generation = ++this.generation;
    if (!request) return this.show(null);
    this.timer = setTimeout(async () => {
      let est;
      try {
        est = await estimateJob(estimable(request));
      } catch {
        est = null; // an API without estimates, or away (the banner says so)
      }
      // Only the answer to the newest question shows.
      if (generation === this.generation) this.show(est && describeEstimate(est));
    }, now ? 0 : DEBOUNCE_MS);
  }
}

// The largest draft this deployment should render within DRAFT_BUDGET_S; the
// smallest without a measure.
export async function chooseDraft(drafts) {
  const answers = await Promise.all(drafts.map((d) => estimateJob(estimable({ prompt: "", ...d })).catch(() => null)));
  const fits = drafts.filter((d, i) => answers[i]?.work_seconds !== null && answers[i]?.work_seconds !== undefined
    && !answers[i].beyond_experience && answers[i].work_seconds <= DRAFT_BUDGET_S);
  return fits.at(-1) || drafts[0];
}

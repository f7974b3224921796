// Folding a live event into a job the API returned, the way
// contracts/mochi_contracts/job_state.py folds it, so a progress bar moves
// on each event without asking the API again.

export const STATUSES = ["queued", "running", "completed", "failed", "cancelled", "expired"];
export const FINAL = new Set(["completed", "failed", "cancelled", "expired"]);

export function isFinal(job) {
  return FINAL.has(job.status);
}

// A new job object (views compare old and new), or the same one if nothing changed.
export function applyEvent(job, type, ev) {
  if (isFinal(job)) return job;
  const next = { ...job, progress: { ...job.progress } };
  switch (type) {
    case "started":
      Object.assign(next, { status: "running", started_at: job.started_at || ev.time, runner: ev.runner,
                            attempts: ev.attempt, queue_position: null, estimated_start_at: null });
      next.progress.step = 0;
      break;
    case "progress":
      next.status = "running";
      next.progress.step = ev.step;
      next.progress.total_steps = ev.total_steps;
      break;
    case "cancel_requested":
      next.cancel_requested = true;
      break;
    case "completed":
      Object.assign(next, { status: "completed", finished_at: ev.time, video: ev.video });
      next.progress.step = next.progress.total_steps;
      break;
    case "failed":
      Object.assign(next, { status: "failed", finished_at: ev.time, error: ev.reason, attempts: ev.attempts });
      break;
    case "cancelled":
      Object.assign(next, { status: "cancelled", finished_at: ev.time, error: ev.reason });
      break;
    case "expired":
      Object.assign(next, { status: "expired", finished_at: ev.time, error: ev.reason });
      break;
    default:
      return job;
  }
  next.progress.fraction = next.progress.total_steps ? next.progress.step / next.progress.total_steps : 0;
  next.estimated_finish_at = estimateFinish(next, ev.time);
  if (next.status !== "queued") next.queue_position = null;
  return next;
}

// The API's own estimate (mochi_api/estimates.py): this run's seconds per
// step so far, times the steps left.
function estimateFinish(job, now) {
  const { step, total_steps: total } = job.progress;
  if (job.status !== "running" || !job.started_at || step < 1) return null;
  const at = new Date(now).getTime();
  const perStep = (at - new Date(job.started_at).getTime()) / step;
  return new Date(at + perStep * (total - step)).toISOString();
}

// Folding a live event into a job the API returned, the way
// contracts/mochi_contracts/job_state.py folds it, so a progress bar moves
// on each event without asking the API again. What only the API knows stays
// the API's: whether a status is final (the resource's `final`; an ending
// event's fold sets it) and the pace (estimated_finish_at and
// progress.seconds_per_step, mochi_contracts/pace.py), which withPace() takes
// from a fresh resource. A job's phase (progress.phase, mochi_contracts/phases.py)
// follows the runner's `phase` events; its newest live preview (`preview`
// events: {job_id, step, total_steps, url}) is kept as job.preview until it ends.

import { laterPhase } from "./phase.js";

export function isFinal(job) {
  return job.final === true;
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
      // A new attempt has no pace until its first step.
      next.progress.seconds_per_step = null;
      next.estimated_finish_at = null;
      // A new attempt's first preview is its own, and it starts from the prompt again.
      next.preview = null;
      next.progress.phase = "encoding_prompt";
      break;
    case "progress":
      next.status = "running";
      next.progress.step = ev.step;
      next.progress.total_steps = ev.total_steps;
      break;
    case "phase":
      next.progress.phase = laterPhase(job.progress.phase || "queued", ev.phase);
      break;
    case "preview":
      // Only a newer one: a replayed history must not step back.
      if (job.preview && job.preview.step > ev.step) return job;
      // The API's SSE data has the link; the event as stored names only the job.
      next.preview = { step: ev.step, total_steps: ev.total_steps,
                       url: ev.url || `${job.links?.preview || `/v1/jobs/${job.id}/preview`}?step=${ev.step}` };
      break;
    case "cancel_requested":
      next.cancel_requested = true;
      break;
    case "completed":
      Object.assign(next, { status: "completed", final: true, finished_at: ev.time, video: ev.video });
      next.progress.step = next.progress.total_steps;
      break;
    case "failed":
      Object.assign(next, { status: "failed", final: true, finished_at: ev.time, error: ev.reason,
                            attempts: ev.attempts });
      break;
    case "cancelled":
      Object.assign(next, { status: "cancelled", final: true, finished_at: ev.time, error: ev.reason });
      break;
    case "expired":
      Object.assign(next, { status: "expired", final: true, finished_at: ev.time, error: ev.reason });
      break;
    default:
      return job;
  }
  next.progress.fraction = next.progress.total_steps ? next.progress.step / next.progress.total_steps : 0;
  if (next.status !== "running") {
    next.estimated_finish_at = null;
    next.progress.seconds_per_step = null;
  }
  // Previews are deleted at the final event; the poster and the video take over.
  if (next.final) {
    next.preview = null;
    next.progress.phase = "finished";
  }
  if (next.status !== "queued") next.queue_position = null;
  return next;
}

// The pace of a fresh resource laid over the folded job (whose step may be
// newer than the resource's); the same job if the fresh one is of another run.
// Its phase too, the further on of the two: a `phase` event on the shared
// stream may not say whose it is (see onEvent in job_list.js).
export function withPace(job, fresh) {
  if (fresh.id !== job.id || fresh.status !== "running" || job.status !== "running") return job;
  const phase = fresh.progress.phase ? laterPhase(job.progress.phase || "queued", fresh.progress.phase)
    : job.progress.phase;
  return { ...job, estimated_finish_at: fresh.estimated_finish_at,
           progress: { ...job.progress, seconds_per_step: fresh.progress.seconds_per_step, phase } };
}
